"""The reproduction harness: resumable grid, table writer, CLI errors, the paper preset's settings.

Fast (well under a minute on 2 cores): the grid tests use scikit-learn's digits (no files) with
a tiny spec; the paper preset runs one ResNet-50 step on the offline CIFAR-10 copy when present.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from imix_teach import cli
from imix_teach import reproduce as rp
from imix_teach.models import TabularMLP
from helpers import tiny_preset

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a shared 2-core machine two threads spin against each other (several x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Stop(Exception):
    pass


def test_killed_grid_resumes_without_recomputing_and_completes_the_table(tmp_path, monkeypatch):
    preset, methods = tiny_preset(), ["npair", "byol"]
    grid = preset.grid(["image"], methods, 1)
    assert len(grid.runs) == 4 and len({r.key for r in grid.runs}) == 4

    seen = []

    def killer(record):
        seen.append(record["key"])
        if len(seen) == 2:
            raise Stop  # the process "dies" right after its second run was saved

    with pytest.raises(Stop):
        rp.reproduce(grid, tmp_path, on_run_done=killer, progress=False)
    saved = json.loads((tmp_path / "runs.json").read_text())["runs"]
    assert [r["key"] for r in saved] == seen == [r.key for r in grid.runs[:2]]
    assert "PARTIAL: 2 of 4" in (tmp_path / "results.md").read_text()

    executed = []
    real_execute = rp.execute

    def counting_execute(run, *args, **kwargs):
        executed.append(run.key)
        return real_execute(run, *args, **kwargs)

    monkeypatch.setattr(rp.runner, "execute", counting_execute)
    rp.reproduce(grid, tmp_path, max_runs=1, progress=False, write=False)  # a short session
    assert executed == [grid.runs[2].key]
    records = rp.reproduce(grid, tmp_path, progress=False)
    assert executed == [r.key for r in grid.runs[2:]]  # only the missing ones, none of the earlier ones
    assert sorted(r["key"] for r in records) == sorted(r.key for r in grid.runs)

    executed.clear()
    rp.reproduce(grid, tmp_path, progress=False)  # everything done: nothing runs
    assert executed == []
    md = (tmp_path / "results.md").read_text()
    assert "(complete)" in md and md.count("| digits |") == 2
    assert (tmp_path / "results.png").stat().st_size > 1000
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["runs_found"] == summary["runs_expected"] == 4
    assert all(len(row["baseline"]["linear"]) == len(row["imix"]["linear"]) == 1 for row in summary["rows"])
    assert not list((tmp_path / "checkpoints").glob("*.pt"))  # per-run checkpoints are removed when done

    # A changed setting is a different run (new hash), never confused with the stored one.
    executed.clear()
    rp.reproduce(preset.grid(["image"], ["npair"], 1, epochs=2), tmp_path, progress=False, write=False)
    assert len(executed) == 2 and all("/seed0/" in k for k in executed)


def test_keys_name_the_run_and_hash_its_settings():
    a, b = tiny_preset(1).grid(["image"], ["moco"], 1).runs, tiny_preset(2).grid(["image"], ["moco"], 1).runs
    assert a[0].key.startswith("tiny/digits/moco/baseline/seed0/") and a[1].key.startswith("tiny/digits/moco/alpha1/seed0/")
    assert rp.config_hash(a[0].config) != rp.config_hash(b[0].config)
    assert tiny_preset(1).grid(["image"], ["moco"], 1).runs[0].key == a[0].key  # stable across calls
    moved = a[0].config.replace(root="/elsewhere", device="cpu", progress=False, path="x.pt")
    assert rp.config_hash(moved) == rp.config_hash(a[0].config)  # where and how visibly it runs is not what it is


def test_format_mean_std_uses_percent_and_sample_std():
    assert rp.format_mean_std([0.70, 0.72, 0.74]) == "72.0 ± 2.0"  # sample std (ddof=1) of 70, 72, 74 is 2
    assert rp.format_mean_std([0.5]) == "50.0"
    assert rp.format_mean_std([]) == "–" and rp.format_mean_std(None) == "–"
    assert rp.format_mean_std([0.123, 0.125], digits=2) == "12.40 ± 0.14"
    assert rp.mean_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, 1.2909944))


def _record(dataset, method, imix, seed, value, primary="linear"):
    return dict(key=f"{dataset}/{method}/{imix}/{seed}", domain="image", dataset=dataset, method=method, imix=imix,
                alpha=1.0 if imix else None, seed=seed, primary=primary, linear=value if primary == "linear" else None,
                least_squares=value if primary == "least_squares" else None, knn=value - 0.1,
                pretrain_seconds=1.0, eval_seconds=0.5)


def test_table_from_known_numbers():
    records = [_record("cifar10", "moco", imix, s, v) for imix, vals in ((False, (0.60, 0.62, 0.64)),
                                                                      (True, (0.65, 0.66, 0.67))) for s, v in enumerate(vals)]
    records += [_record("higgs", "npair", imix, 0, v, "least_squares") for imix, v in ((False, 0.6), (True, 0.55))]
    rows = rp.summarize(records)
    table = rp.markdown_table(rows)
    lines = table.splitlines()
    assert "NOT our setting" in lines[0]
    assert lines[2] == ("| cifar10 | moco | linear probe | 62.0 ± 2.0 | 66.0 ± 1.0 | +4.0 | 52.0 ± 2.0 | 56.0 ± 1.0 "
                        "| 3 | 93.5 → 96.1 |")
    assert lines[3] == "| higgs | npair | least squares | 60.0 | 55.0 | -5.0 | 50.0 | 45.0 | 1 | – |"
    assert "same setting" in rp.markdown_table(rows, paper_matches=True).splitlines()[0]


def test_plot_writes_a_png(tmp_path):
    records = [_record("cifar10", m, imix, s, 0.5 + 0.01 * s) for m in ("npair", "byol") for imix in (False, True)
               for s in range(2)]
    rp.plot_results(rp.summarize(records), tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("argv, option, bad", [
    (["--domain", "vision"], "--domain", "vision"),
    (["--domain", "image,sound"], "--domain", "sound"),
    (["--methods", "npair,swav"], "--methods", "swav"),
    (["--preset", "gpu"], "--preset", "gpu"),
    (["--seeds", "0"], "--seeds", "0"),
    (["--datasets", "imagenet"], "--datasets", "imagenet"),
])
def test_cli_argument_errors_name_the_argument(argv, option, bad, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["reproduce", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert option in err and bad in err
    if option in ("--domain", "--methods"):
        assert "choose from" in err  # and the valid values are listed


def test_api_errors_name_the_argument():
    with pytest.raises(ValueError, match="domain"):
        rp.cpu_preset().grid(["audio"], ["npair"], 1)
    with pytest.raises(ValueError, match="methods"):
        rp.cpu_preset().grid(["image"], ["supnpair"], 1)
    with pytest.raises(ValueError, match="preset"):
        rp.get_preset("tpu")


def test_paper_preset_matches_spec_section_3():
    by = {s.dataset: s for s in rp.paper_preset().datasets}
    for s in by.values():
        assert (s.template.runtime.amp, s.template.runtime.channels_last) == ("auto", "auto")  # bf16 + NHWC on CUDA
        assert s.template.method.scale == "paper" and s.template.mixing.per_sample and s.template.mixing.max_lam
    for name in ("cifar10", "cifar100"):
        s, t = by[name], by[name].template
        assert (s.domain, t.encoder.kind, t.encoder.size) == ("image", "resnet", 50)
        assert (t.optim.batch_size, t.method.tau, t.mixing.alpha, t.optim.epochs) == (256, 0.2, 1.0, 4000)
        assert t.optim.lr is None and t.optim.base_lr == 0.125 and t.optim.weight_decay == 1e-4
        assert t.optim.warmup_epochs == 10
        options = s.method_options
        assert (options["npair"]["proj_hidden"], options["npair"]["proj_dim"]) == (2048, 128)
        assert options["moco"]["queue_size"] == 4096 and options["moco"]["momentum"] == 0.999
        assert options["byol"]["momentum"] == 0.999
        assert t.evaluation.probes == ("linear", "knn") and t.evaluation.probe_epochs == 100
    sc = by["speechcommands"].template
    assert (by["speechcommands"].domain, sc.encoder.kind, sc.method.tau, sc.optim.epochs, sc.optim.batch_size) == (
        "speech", "resnet", 0.5, 500, 256)
    assert sc.data.train_options["classes"] == "paper12"
    for name in ("covtype", "higgs"):
        s, t = by[name], by[name].template
        assert (s.domain, t.optim.batch_size, t.optim.epochs, t.method.tau, t.mixing.alpha) == ("tabular", 512, 500, 0.1, 2.0)
        assert (s.method_options["npair"]["proj_hidden"], s.method_options["npair"]["proj_dim"]) == (2048, 128)
        mlp = TabularMLP(54, width=t.encoder.size)
        assert [m.out_features for m in mlp if isinstance(m, torch.nn.Linear)] == [2048, 2048, 4096, 4096, 8192]
        assert mlp.out_dim == 2048  # maxout with 4 pieces
    assert by["higgs"].template.data.train_options["train_size"] == 100_000 and by["higgs"].primary == "least_squares"
    assert rp.PAPER_TABLE1["cifar10"]["moco"] == (93.5, 96.1) and rp.PAPER_TABLE1["speechcommands"]["byol"] == (94.8, 98.3)
    assert rp.PAPER_TABLE1["cifar100"] == {"npair": (70.8, 75.8), "moco": (71.6, 78.1), "byol": (72.7, 78.6)}


def test_cpu_preset_uses_the_papers_per_domain_tau_and_alpha():
    by = {s.dataset: s.template for s in rp.cpu_preset().datasets}
    assert (by["cifar10"].method.tau, by["cifar10"].mixing.alpha) == (0.2, 1.0)
    assert by["fsdd"].method.tau == 0.5
    assert (by["covtype"].method.tau, by["covtype"].mixing.alpha, by["higgs"].mixing.alpha) == (0.1, 2.0, 2.0)
    assert all(t.method.scale == "cpu" and not t.method.options for t in by.values())  # the library's CPU settings
    by = {s.dataset: s for s in rp.cpu_preset().datasets}
    assert by["higgs"].primary == "least_squares"
    assert rp.get_preset("cpu", quick=True).name == "cpu-quick"


@pytest.mark.skipif(not (SHARED / "cifar10-jpg").is_dir(), reason=f"offline CIFAR-10 not found under {SHARED}")
@pytest.mark.slow
def test_paper_preset_constructs_and_runs_one_step_on_cpu(tmp_path):
    # per_class=1 -> 10 images; the batch is capped at the data size -> exactly one ResNet-50 step.
    grid = rp.get_preset("paper").grid(["image"], ["npair"], 1, datasets=["cifar10"], epochs=1, per_class=1)
    records = rp.reproduce(grid, tmp_path, root=str(SHARED), progress=False, device="cpu")
    assert len(records) == 2
    for r in records:
        assert (r["n_train"], r["batch_size"], r["epochs"], len(r["loss_curve"])) == (10, 10, 1, 1)
        assert 0.0 <= r["linear"] <= 1.0 and r["key"].startswith("paper/cifar10/npair/")
    assert "same setting" in (tmp_path / "results.md").read_text()


def test_a_diverged_run_is_recorded_and_the_grid_goes_on(tmp_path, monkeypatch):
    from imix_teach import engine
    from imix_teach.train import NonFiniteLossError

    real_run = engine.run

    def flaky_run(config, *args, **kwargs):
        if config.mixing.alpha is not None:
            raise NonFiniteLossError("loss became nan at epoch 0")
        return real_run(config, *args, **kwargs)

    monkeypatch.setattr(engine, "run", flaky_run)
    records = rp.reproduce(tiny_preset().grid(["image"], ["npair"], 1), tmp_path, progress=False)
    assert len(records) == 2 and [bool(r.get("error")) for r in records] == [False, True]
    row = next(line for line in (tmp_path / "results.md").read_text().splitlines() if line.startswith("| digits"))
    assert "| – |" in row and "0 baseline / 1 i-Mix diverged" in row


def test_estimate_times_steps_and_extrapolates(tmp_path):
    from imix_teach.engine import DataCache

    grid = tiny_preset(epochs=7).grid(["image"], ["npair"], 3)
    store = rp.ResultStore(tmp_path / "runs.json")
    rows = rp.estimate(grid, grid.runs, store, DataCache(), steps=1)
    assert [r["kind"] for r in rows] == [("digits", "npair", False), ("digits", "npair", True)]
    for r in rows:
        assert r["step_seconds"] > 0 and r["runs"] == 3 and r["steps"] == 3 * 7 * (60 // 32)  # 60 digits, batch 32
        assert r["hours"] == pytest.approx((r["steps"] * r["step_seconds"] + 3 * r["eval_seconds"]) / 3600)
        assert r["measured"] == "1 steps here"
    assert "Estimated total" in rp.estimate_table(rows)
    # Once runs of a kind are finished, their records give its seconds per step instead of a measurement.
    done = rp.execute(grid.runs[0], DataCache())
    store.add(done)
    again = {r["kind"]: r for r in rp.estimate(grid, grid.runs[1:], store, DataCache(), steps=1)}
    baseline = again[grid.runs[0].kind]
    assert baseline["measured"] == "records" and baseline["runs"] == 2
    assert baseline["step_seconds"] == done["pretrain_seconds"] / done["steps"]
