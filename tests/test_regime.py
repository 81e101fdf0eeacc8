"""The regime grid (`imix-teach reproduce --preset regime`): fixed protocol, resumable records, the report,
and the committed results in results/regime/ that the notebooks and README quote."""
from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest

from helpers import NUMBER, quoting_texts
from imix_teach import cli, engine
from imix_teach import reproduce as rp
from imix_teach.reproduce import regime, runner
from imix_teach.reproduce.regime_report import COLUMNS, FILES, gain, gain_table, quotable, read_summary, summary_rows

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "regime"


@pytest.fixture(scope="module")
def quick_grid(tmp_path_factory, cifar_available):
    out = tmp_path_factory.mktemp("regime") / "quick"
    assert cli.main(["reproduce", "--preset", "regime", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def cifar_available():
    try:
        engine.load_data(regime.grid(quick=True).runs[0].config.data)
    except FileNotFoundError as err:
        pytest.skip(f"CIFAR-10 is not on disk here ({err})")


@pytest.mark.slow  # with its fixture, the quick grid: ~15 s
def test_quick_grid_writes_every_cell_seed_and_probe(quick_grid):
    p = json.loads((quick_grid / "protocol.json").read_text())
    assert p == regime.protocol(quick=True)
    with open(quick_grid / "summary.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == COLUMNS
        rows = list(reader)
    expected = {(aug, str(c["per_class"]), str(c["epochs"]), m, v, probe, str(s))
                for c in p["cells"] for m in p["settings"]["methods"] for aug, vs in p["settings"]["variants"].items()
                for v in vs for probe in ("linear", "knn") for s in p["seeds"]}
    assert {tuple(r[k] for k in COLUMNS[:-1]) for r in rows} == expected
    assert len(rows) == len(expected)  # a cell on both sweeps is run (and listed) once
    assert all(0 <= float(r["accuracy"]) <= 100 for r in rows)
    for name in FILES:
        assert (quick_grid / name).stat().st_size > 0, name
    assert "complete" in (quick_grid / "table.md").read_text().splitlines()[0]


def test_a_second_call_resumes_and_trains_nothing(quick_grid, capsys):
    before = json.loads((quick_grid / "runs.json").read_text())["runs"]
    assert cli.main(["reproduce", "--preset", "regime", "--quick", "--out", str(quick_grid), "--no-progress"]) == 0
    assert json.loads((quick_grid / "runs.json").read_text())["runs"] == before  # same records, same timestamps
    assert "to go" not in capsys.readouterr().out  # no estimate: nothing left to run


def test_a_stopped_grid_continues_where_it_stopped(tmp_path, cifar_available, capsys):
    out = tmp_path / "partial"
    records = rp.reproduce(regime.grid(quick=True), out, max_runs=2, progress=False)
    assert len(records) == 2
    keys = [r["key"] for r in records]
    again = rp.reproduce(regime.grid(quick=True), out, max_runs=1, progress=False)
    assert [r["key"] for r in again][:2] == keys and len(again) == 3
    assert "58 to go" in capsys.readouterr().out  # the estimate is printed before the run starts
    assert "PARTIAL: 3 of 60 runs" in (out / "table.md").read_text()


def test_a_folder_with_another_protocol_is_refused(tmp_path):
    p = regime.protocol(quick=True)
    p["settings"]["tau"] = 0.5
    (tmp_path / "protocol.json").write_text(json.dumps(p))
    with pytest.raises(ValueError, match="another protocol.*another --out"):
        runner.fix_protocol(tmp_path, regime.protocol(quick=True))


def test_the_cli_refuses_options_the_fixed_protocol_does_not_take(capsys):
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--preset", "regime", "--epochs", "3"])
    assert "argument --epochs: the regime preset runs a fixed protocol" in capsys.readouterr().err


def test_run_keys_change_with_the_settings_and_name_the_cell():
    p = regime.protocol()
    runs = regime.grid(p=p).runs
    assert len({r.key for r in runs}) == len(runs) == 7 * 2 * 5 * 3
    assert runs[0].key.startswith("regime/none/pc100/ep25/npair/baseline/seed0/")
    changed = json.loads(json.dumps(p))
    changed["settings"]["alpha"] = 2.0
    assert regime.grid(p=changed).runs[0].key != runs[0].key
    assert {r.config.seed for r in runs[: len(runs) // 3]} == {0}  # seed-major: a partial grid covers every cell


def test_no_augmentation_gives_identical_views_and_weak_crops_and_flips_without_colour(cifar_available):
    import torch

    data = regime.grid(quick=True).runs[0].config.data
    train, _ = engine.load_data(data)
    x, g = train.inputs[:6], torch.Generator().manual_seed(0)
    none = engine.augmentation(dataclasses.replace(data, augmentation="none"), train)
    assert torch.equal(none(x, g), none(x, g)) and torch.equal(none(x, g), train.transform(x))
    weak = engine.augmentation(dataclasses.replace(data, augmentation="weak"), train)
    assert weak.jitter_p == 0 and weak.gray_p == 0 and weak.flip == 0.5 and weak.scale == (0.2, 1.0)
    assert not torch.equal(weak(x, g), weak(x, g))


def test_gain_is_the_mean_paired_difference_with_its_spread():
    by = {"baseline": {0: 40.0, 1: 42.0, 2: 44.0}, "imix": {0: 45.0, 1: 46.0, 2: 50.0}}
    g = gain(by, "imix")
    assert g["gain"] == pytest.approx(5.0) and g["spread"] == pytest.approx(1.0) and g["seeds"] == 3
    assert g["apart"]  # 5 > std(baseline) 2 + std(i-Mix) 2.65
    by["imix"] = {0: 41.0, 1: 46.0, 2: 45.0}
    assert not gain(by, "imix")["apart"]  # 2 < 2 + 2.65: the bars overlap
    table = gain_table([dict(augmentation="none", per_class=1, epochs=1, method="npair", variant=v, probe="linear",
                             seed=s, accuracy=a) for v, seeds in by.items() for s, a in seeds.items()])
    assert "| none | 1 | 1 | npair | 42.0 ± 2.0 | 44.0 ± 2.6 | +2.0 ± 1.7 |" in table  # differences 1, 4, 1


# ------------------------------------------------------------------ the committed results of the whole grid
def test_the_committed_protocol_is_this_version_of_the_code():
    assert json.loads((COMMITTED / "protocol.json").read_text()) == regime.protocol()


def test_the_committed_summary_covers_every_cell_and_seed_and_matches_the_records():
    p = json.loads((COMMITTED / "protocol.json").read_text())
    records = json.loads((COMMITTED / "runs.json").read_text())["runs"]
    keys = {r.key for r in regime.grid(p=p).runs}
    assert {r["key"] for r in records} == keys, "runs.json must hold exactly the protocol's runs"
    rows = read_summary(COMMITTED / "summary.csv")
    assert len(rows) == 2 * len(keys) and all(r["accuracy"] is not None for r in rows)
    want = sorted(tuple(r.values()) for r in summary_rows(records, p))
    assert sorted(tuple(r.values()) for r in rows) == want  # summary.csv is what runs.json says, nothing else
    assert "complete" in (COMMITTED / "table.md").read_text().splitlines()[0]


# Texts that quote the grid carry this marker: a README block, or a notebook markdown cell.
MARKER = "<!-- numbers: results/regime/summary.csv -->"


def test_every_number_quoted_from_the_grid_is_in_the_summary():
    allowed = quotable(read_summary(COMMITTED / "summary.csv"))
    texts = quoting_texts(MARKER)
    assert any(name.startswith("07") for name, _ in texts) and any(name.startswith("08") for name, _ in texts)
    for name, text in texts:
        for number in NUMBER.findall(text.replace("$", "")):
            assert number.replace("−", "-") in allowed, f"{name} quotes {number!r}, which summary.csv does not give"


def test_the_package_carries_the_committed_summary_and_protocol():
    from imix_teach.reproduce.regime_report import packaged

    PACKAGED = packaged("regime")
    for name in ("summary.csv", "protocol.json"):
        assert (PACKAGED / name).read_bytes() == (COMMITTED / name).read_bytes(), \
            f"copy results/regime/{name} to {PACKAGED.relative_to(ROOT)}/ (notebooks read it without the repository)"
