"""benchmarks/gpu_session.py's dry run writes the files a GPU session writes, filled with real measurements.

The dry run is every step of the GPU session on this CPU, tiny (a width-8 SmallConvNet, 8 px, batch 16,
2 steps): the checks below are those a reader of the GPU session's files relies on. Every figure is
recomputed from the measured ones it is derived from, the protocol is on file before any run, and
the clock readings fit inside the time the process took.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_session  # noqa: E402
import gpu_session_runs as parts  # noqa: E402


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_session")
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_session.py"), "--dry-run", "--out", str(out)]
    tic = time.monotonic()
    proc = subprocess.run(command, cwd=ROOT, env={**os.environ, "IMIX_OFFLINE": "1"}, capture_output=True,
                          text=True, timeout=300)
    wall = time.monotonic() - tic
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return dict(wall=wall, speed=json.loads((out / "speed.json").read_text()),
                runs=json.loads((out / "runs.json").read_text()))


def _positive(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_the_dry_run_takes_under_a_minute(dry):
    assert dry["wall"] < 60, f"dry run took {dry['wall']:.0f} s"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["speed", "runs"])
def test_both_files_say_where_and_how_they_were_made(dry, name):
    doc = dry[name]
    assert doc["device"] == "cpu" and doc["gpu_name"] is None and doc["dry_run"] is True
    assert doc["torch"] == torch.__version__ and doc["cuda"] == torch.version.cuda
    assert "benchmarks/gpu_session.py --dry-run --out" in doc["command"]
    assert doc["sizes"]["compile_backend"] == "aot_eager" and doc["sizes"]["batch"] == parts.DRY.batch


@pytest.mark.slow
def test_every_speed_row_is_measured_and_every_ratio_computed_from_them(dry):
    speed = dry["speed"]
    rows = {(r["method"], r["setting"], r["alpha"]): r for r in speed["rows"]}
    assert set(rows) == {(m, s, a) for m, s in gpu_session.CASES for a in parts.ALPHAS}
    assert len(rows) == len(speed["rows"]) == 10
    for r in rows.values():
        for key in ("step_s", "images_per_s", "epoch_s", "first_epoch_s", "final_loss"):
            assert _positive(r[key]), (key, r)
        assert r["images_per_s"] == pytest.approx(r["batch"] / r["step_s"], rel=1e-12)
        assert r["epoch_s"] == pytest.approx(parts.EPOCH_IMAGES / r["images_per_s"], rel=1e-12)
        assert r["one_off_s"] == pytest.approx(r["first_epoch_s"] - r["steps"] * r["step_s"], abs=1e-12)
        assert r["peak_memory_mb"] is None and r["status"] == "done"  # no CUDA allocator on a CPU: not made up
        assert {k: r[k] for k in ("amp", "channels_last", "compile")} == gpu_session.SETTINGS[r["setting"]]
    assert len({r["step_s"] for r in rows.values()}) > 1, "ten timings that agree to the last bit were not measured"
    for (method, setting, alpha), r in rows.items():
        if alpha is not None:
            assert r["imix_over_baseline"] == pytest.approx(r["step_s"] / rows[method, setting, None]["step_s"])
            assert speed["summary"]["imix_over_baseline"][f"{method}/{setting}"] == r["imix_over_baseline"]
        if r["compile"]:
            assert r["compile_s"] == pytest.approx(r["one_off_s"] - rows[method, "bf16_cl", alpha]["one_off_s"])
    fastest = min((r for r in rows.values() if r["method"] == "npair"), key=lambda r: r["epoch_s"])
    assert speed["summary"]["fastest_npair"]["epoch_s"] == fastest["epoch_s"]
    assert speed["summary"]["epoch_goal_met"] == (fastest["epoch_s"] <= gpu_session.GOALS["epoch_s_at_most"])
    clocked = sum(r["first_epoch_s"] + r["steps"] * r["step_s"] for r in rows.values())
    assert clocked < speed["summary"]["seconds"] < dry["wall"]


@pytest.mark.slow
def test_the_protocol_is_on_file_before_any_run_and_its_rule_gave_the_epochs(dry):
    runs, speed = dry["runs"], dry["speed"]
    p = runs["protocol"]
    starts = [r["started_at"] for r in runs["floors"] + runs["runs"]]
    assert p["written_at"] < min(starts) and p["epochs_set_at"] < min(r["started_at"] for r in runs["runs"])
    inputs = p["rule_inputs"]
    assert p["epochs"] == parts.epochs_per_cell(**inputs)
    same = [r for r in speed["rows"] if r["setting"] == "bf16_cl"]
    for method in parts.METHODS:  # the rule read the speed table's step times
        assert inputs["step_s"][method] == max(r["step_s"] for r in same if r["method"] == method)
    assert inputs["eval_s"] == {f["cell"]: f["eval_seconds"] for f in runs["floors"]}


@pytest.mark.slow
def test_every_run_of_every_cell_finished_and_its_figures_are_its_own(dry):
    runs = dry["runs"]
    p = runs["protocol"]
    got = {(r["cell"], r["method"], r["alpha"], r["seed"]): r for r in runs["runs"]}
    assert set(got) == {(c, m, a, s) for c in parts.CELLS for m in parts.METHODS for a in parts.ALPHAS
                        for s in parts.SEEDS} and len(got) == len(runs["runs"])
    assert p["cells"]["10pct"]["n_train"] == 10 * parts.DRY.small_per_class < p["cells"]["full"]["n_train"]
    for (cell, method, alpha, seed), r in got.items():
        assert r["status"] == "done" and r["epochs"] == p["epochs"][cell] >= 1
        assert r["n_train"] == p["cells"][cell]["n_train"]
        assert r["config"]["mixing"]["alpha"] == alpha and r["config"]["method"]["name"] == method
        assert r["config"]["optim"]["epochs"] == r["epochs"] and r["config"]["seed"] == seed
        assert len(r["epoch_seconds"]) == len(r["epoch_loss"]) == r["epochs"]
        assert all(_positive(t) for t in r["epoch_seconds"]) and all(math.isfinite(v) for v in r["epoch_loss"])
        assert sum(r["epoch_seconds"]) <= r["pretrain_seconds"] < r["finished_at"] - r["started_at"]
        assert _positive(r["eval_seconds"]) and 0 <= r["linear"] <= 1 and 0 <= r["knn"] <= 1
    for g in runs["gains"]:
        base, imix = got[g["cell"], g["method"], None, g["seed"]], got[g["cell"], g["method"], g["alpha"], g["seed"]]
        assert g["linear_gain"] == imix["linear"] - base["linear"] and g["knn_gain"] == imix["knn"] - base["knn"]
    assert len(runs["gains"]) == len(parts.CELLS) * len(parts.METHODS) * len(parts.SEEDS)
    assert {f["cell"] for f in runs["floors"]} == set(parts.CELLS)


def test_the_epochs_rule_shares_the_minutes_equally_and_keeps_to_its_bounds():
    args = dict(steps={"full": 97, "10pct": 9}, step_s={"npair": 0.05, "moco": 0.04}, eval_s={"full": 20, "10pct": 2},
                one_off_s=1.0, runs_per_cell=4, max_epochs=4000)
    epochs = parts.epochs_per_cell(300.0, **args)
    share = (parts.MARGIN * 300 - 4 * 22 - 8 * 1.0) / 8
    assert epochs == {"full": math.floor(share / (97 * 0.05)), "10pct": math.floor(share / (9 * 0.05))}
    assert epochs["10pct"] > 9 * epochs["full"]  # the same steps, about
    assert parts.epochs_per_cell(1.0, **args) == {"full": 1, "10pct": 1}  # no time left: one epoch, not zero
    assert parts.epochs_per_cell(1e9, **args) == {"full": 4000, "10pct": 4000}
    assert parts.epochs_per_cell(600.0, **args)["full"] > epochs["full"]


def test_a_failed_speed_row_is_recorded_and_the_others_still_count(tmp_path, monkeypatch):
    def fake_row(sizes, device, train, method, setting, alpha):
        if gpu_session.SETTINGS[setting]["compile"] and alpha is None:
            raise RuntimeError("CUDA out of memory (pretend)")
        step = 0.1 if alpha is None else 0.104
        return dict(method=method, setting=setting, alpha=alpha, step_s=step, epoch_s=step * 100, one_off_s=0.5,
                    **gpu_session.SETTINGS[setting])

    monkeypatch.setattr(gpu_session, "speed_row", fake_row)
    rule = gpu_session.speed(parts.Report(tmp_path / "speed.json", {}), parts.DRY, torch.device("cpu"), None)
    rows = {(r["method"], r["setting"], r["alpha"]): r for r in json.loads((tmp_path / "speed.json").read_text())["rows"]}
    failed = rows["npair", "bf16_cl_compile", None]
    assert failed["status"] == "failed" and "out of memory" in failed["error"] and "step_s" not in failed
    orphan = rows["npair", "bf16_cl_compile", 1.0]  # measured, but its baseline failed: no ratio made up
    assert orphan["status"] == "done" and "imix_over_baseline" not in orphan and orphan["compile_s"] == 0.0
    assert rows["moco", "bf16_cl", 1.0]["imix_over_baseline"] == pytest.approx(1.04)
    assert rule == {"step_s": {"npair": 0.104, "moco": 0.104}, "one_off_s": 0.5}


def test_a_report_is_on_disk_after_every_record(tmp_path):
    report = parts.Report(tmp_path / "x.json", dict(device="cpu"))
    assert json.loads((tmp_path / "x.json").read_text()) == {"device": "cpu"}
    report.add("runs", {"a": 1})
    assert json.loads((tmp_path / "x.json").read_text())["runs"] == [{"a": 1}]
    assert list(tmp_path.iterdir()) == [tmp_path / "x.json"]  # no temporary file left behind


def test_the_data_path_may_name_the_root_or_the_cifar_folder(tmp_path):
    assert parts.cifar_root(tmp_path / "cifar10-jpg") == tmp_path
    assert parts.cifar_root(tmp_path / "cifar-10-batches-py") == tmp_path
    assert parts.cifar_root(tmp_path) == tmp_path
    with pytest.raises(SystemExit):
        gpu_session.parse_args(["--out", str(tmp_path)])  # a GPU session needs --data


def test_real_cifar10_loads_at_the_dry_run_sizes():
    root = Path(os.environ.get("IMIX_DATA") or ROOT.parent / "shared" / "data")
    if not (root / "cifar10-jpg").is_dir() and not (root / "cifar-10-batches-py").is_dir():
        pytest.skip(f"CIFAR-10 is not under {root}")
    train, test = parts.load_splits(str(root / "cifar10-jpg"), parts.DRY)
    assert train.inputs.shape == (10 * parts.DRY.train_per_class, 3, 8, 8) and train.inputs.dtype == torch.uint8
    assert len(test) == 10 * parts.DRY.test_per_class and train.name == "cifar10"
    cells = parts.cells(train, parts.DRY)
    assert len(cells["10pct"]) == 10 * parts.DRY.small_per_class and torch.equal(cells["10pct"].labels.bincount(),
                                                                                torch.ones(10, dtype=torch.long))
