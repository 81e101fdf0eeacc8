"""environment.yml (conda) and pyproject.toml must list the same packages with the same bounds."""
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# conda-forge/pytorch names that differ from PyPI's
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


def test_constraints_pin_the_tested_torch_set_within_pyproject_bounds():
    pins = dict(
        line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line
    )
    assert pins == {"torch": "2.14.1", "torchvision": "0.29.1", "torchaudio": "2.11.0"}
