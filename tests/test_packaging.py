"""Packaging facts: environment.yml and pyproject.toml agree, the pins, an honest Python floor, `make lab`."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# conda-forge/pytorch names that differ from PyPI's
VERMIN = [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())"]  # it has no __main__
CONDA_TO_PYPI = {"pytorch": "torch", "pysoundfile": "soundfile"}

tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")


def _parse(spec: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", spec)
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_environment_yml_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs += extra
    pyproject = dict(_parse(s) for s in specs)
    conda = {}
    text = (ROOT / "environment.yml").read_text()
    dependencies = text.split("dependencies:", 1)[1]
    for line in dependencies.splitlines():
        m = re.match(r"^  - ([A-Za-z][^:]*)$", line)
        if m and m.group(1) != "pip" and not m.group(1).startswith("python"):
            name, bound = _parse(m.group(1))
            conda[CONDA_TO_PYPI.get(name, name)] = bound
    assert conda == pyproject


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.match(r"\d+(?:\.\d+)*", text).group(0).split("."))


def test_constraints_pin_the_tested_torch_set_within_pyproject_bounds():
    """Each pin is exact, lies within pyproject's loose bound, and is what `make install` put in this venv
    (a pin bumped in one place only, or one pyproject no longer allows, fails here)."""
    from importlib.metadata import version

    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line)
    assert set(pins) == {"torch", "torchvision", "torchaudio"}
    floors = dict(_parse(spec) for spec in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    for name, pin in pins.items():
        assert floors[name].startswith(">="), f"{name}: pyproject should give a floor, got {floors[name]!r}"
        assert _version(pin) >= _version(floors[name][2:]), f"{name}=={pin} is below pyproject's {floors[name]}"
        if os.environ.get("IMIX_QUICK"):  # `make test`: the venv that `make install` built from these pins
            assert version(name).split("+")[0] == pin, f"{name}: installed {version(name)}, pinned {pin}"


def _floor() -> tuple[int, int]:
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    m = re.fullmatch(r">=(\d+)\.(\d+)", spec.strip())
    assert m, f"requires-python should be a plain floor like '>=3.10', got {spec!r}"
    return int(m.group(1)), int(m.group(2))


@pytest.mark.slow
def test_python_floor_is_honest_for_the_package():
    """vermin reads the syntax and the standard-library calls; union-types catches `float | Tensor` at import."""
    vermin = pytest.importorskip("vermin")
    major, minor = _floor()
    args = ["--no-tips", "--violations", "--feature", "union-types", f"-t={major}.{minor}-", str(ROOT / "imix_teach")]
    result = subprocess.run([*VERMIN, *args], capture_output=True, text=True)
    assert result.returncode == 0, f"code needs a newer Python than requires-python:\n{result.stdout}"
    # and the floor is tight (so this check can fail): one minor version below it must not pass
    below = [f"-t={major}.{minor - 1}-" if a.startswith("-t=") else a for a in args]
    result = subprocess.run([*VERMIN, *below], capture_output=True, text=True)
    assert result.returncode != 0, "the code now runs on an older Python: lower requires-python (and this test's docs)"


def test_python_floor_is_the_same_everywhere():
    major, minor = _floor()
    assert f"python>={major}.{minor}" in (ROOT / "environment.yml").read_text()
    assert f"Python {major}.{minor}+" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("display", ["", ":0"])
def test_make_lab_starts_as_root_takes_args_and_opens_no_browser_when_headless(display):
    """Dry run (make -n): the command `make lab` would run, for this user, with and without a display."""
    make = shutil.which("make") or pytest.skip("make is not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")} | {"DISPLAY": display}
    venv = ROOT / ".venv"  # -o: never (re)install for a dry run
    result = subprocess.run([make, "-n", "-o", f"{venv}/.installed", f"VENV={venv}", "lab", "ARGS=--port 8899"],
                            cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    command = next(line for line in result.stdout.splitlines() if "jupyter lab" in line).split()
    assert command[-2:] == ["--port", "8899"]
    assert ("--allow-root" in command) == (os.getuid() == 0)
    headless = not display and sys.platform != "darwin"
    assert ("--ServerApp.open_browser=False" in command) == headless
