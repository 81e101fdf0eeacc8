"""The domains grid (`imix-teach reproduce --preset domains`): a preset of the one grid runner with a fixed
protocol, its report, and the committed results in results/domains/ that notebook 06 and the README quote."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from helpers import NUMBER, quoting_texts
from imix_teach import cli
from imix_teach import reproduce as rp
from imix_teach.reproduce import domains
from imix_teach.reproduce.domains_report import (COLUMNS, FLOOR_COLUMNS, PAPER, findings, gain_table, load_rows, quotable,
                                                 size_trend, summary_rows)
from imix_teach.reproduce.regime_report import packaged

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "domains"
NEEDS_RESULTS = pytest.mark.skipif(not (COMMITTED / "summary.csv").is_file(),
                                   reason="the domains grid has not finished: results/domains/summary.csv is missing")


def test_the_grid_has_every_cell_seed_and_floor_of_its_protocol():
    p = domains.protocol()
    g = domains.grid(p=p)
    assert len({r.key for r in g.runs}) == len(g.runs)
    for cell in p["cells"]:
        for seed in p["seeds"][cell["dataset"]]:
            mine = [r for r in g.runs if r.labels["dataset"] == cell["dataset"] and r.labels["size"] == cell["size"]
                    and r.config.seed == seed]
            assert sum(r.floor for r in mine) == 1
            # domain: 3 methods x (baseline, i-Mix); none: 3 methods x (baseline, i-Mix, i-Mix + InputMix)
            assert sum(not r.floor for r in mine) == 3 * 2 + 3 * 3
    assert {len(s) for s in p["seeds"].values()} >= {3} and min(map(len, p["seeds"].values())) >= 3


def test_less_data_means_more_passes_over_it():
    cells = [c for c in domains.protocol()["cells"] if c["dataset"] == "fsdd"]
    assert [c["size"] for c in cells] == sorted(c["size"] for c in cells)
    assert [c["epochs"] for c in cells] == sorted((c["epochs"] for c in cells), reverse=True)


def test_a_run_is_the_paper_setting_of_its_domain():
    g = domains.grid()
    by = {(r.labels["dataset"], r.labels["augmentation"], r.labels["method"], r.labels["variant"]): r.config
          for r in g.runs if not r.floor}
    assert by["fsdd", "domain", "moco", "imix"].method.tau == 0.5 and by["fsdd", "none", "moco", "imix"].method.tau == 0.2
    assert by["covtype", "domain", "npair", "imix"].mixing.alpha == 2.0
    assert by["covtype", "domain", "npair", "baseline"].mixing.alpha is None
    assert by["higgs", "none", "byol", "imix+inputmix"].mixing.inputmix
    assert by["higgs", "none", "byol", "imix"].evaluation.probes[0] == "least_squares"
    assert by["fsdd", "none", "npair", "baseline"].data.augmentation == "none"


def test_the_cli_runs_the_fixed_protocol_only(capsys):
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--preset", "domains", "--methods", "npair"])
    assert "fixed protocol" in capsys.readouterr().err


def _record(dataset, aug, size, method, variant, seed, linear, knn, floor=False):
    return dict(dataset=dataset, augmentation="-" if floor else aug, size=size, epochs=0 if floor else 4,
                method="-" if floor else method, variant="floor" if floor else variant, seed=seed,
                linear=linear, knn=knn, least_squares=None)


def test_the_table_gives_mean_std_gain_wins_and_floor():
    recs = [_record("covtype", "none", 100, "moco", v, s, a / 100, 0.5) for v, accs in
            (("baseline", (40, 42, 44)), ("imix", (41, 46, 45))) for s, a in enumerate(accs)]
    recs += [_record("covtype", "-", 100, "-", "-", s, a / 100, 0.3, floor=True) for s, a in enumerate((30, 31, 32))]
    rows, floors = summary_rows(recs)
    assert len(rows) == 12 and len(floors) == 6 and tuple(rows[0]) == COLUMNS and tuple(floors[0]) == FLOOR_COLUMNS
    table = gain_table(rows, "covtype", "linear", floors)
    # differences 1, 4, 1: gain +2.0 ± 1.7, ahead in 3 of 3 seeds; floor 31.0 ± 1.0
    assert "| none | 100 | 4 | moco | 42.0 ± 2.0 | 44.0 ± 2.6 | +2.0 ± 1.7 | 3/3 | – |  |  | 31.0 ± 1.0 |" in table


def test_the_size_trend_compares_the_gain_at_the_smallest_and_largest_size():
    # (size, baseline per seed, i-Mix per seed): gains +3 ± 0 at 100, +1 ± 0 at 300, and +0.5 ± 2.1 at 900
    series = [(100, (40, 42), (43, 45)), (300, (50, 52), (51, 53)), (900, (60, 62), (62, 61))]
    recs = [_record("covtype", "none", size, "moco", v, s, a / 100, 0.5)
            for size, base, mixed in series for v, accs in (("baseline", base), ("imix", mixed))
            for s, a in enumerate(accs)]
    rows, _ = summary_rows(recs)
    # smallest (+3 ± 0) against largest (+0.5 ± 2.1): larger with less data, 2.5 apart > 0 + 2.1
    assert size_trend(rows, "covtype", "linear") == {"less data, more gain": [("none", "moco")],
                                                     "less data, less gain": [], "beyond": [("none", "moco")]}
    one_size, _ = summary_rows([r for r in recs if r["size"] == 100])
    assert size_trend(one_size, "covtype", "linear") == {"less data, more gain": [], "less data, less gain": [],
                                                         "beyond": []}
    assert any("larger with less data in 1 of 1" in s and "spreads in 1." in s for s in findings(rows))


@pytest.mark.slow
def test_a_few_runs_of_the_quick_grid_run_resume_and_report(tmp_path):
    g = domains.grid(quick=True)
    higgs = [r for r in g.runs if r.labels["dataset"] == "higgs" and r.config.seed == 0]
    part = dataclasses.replace(g, runs=tuple(higgs[:2]))
    try:
        records = rp.reproduce(part, tmp_path, progress=False, say=lambda s: None)
    except FileNotFoundError as err:
        pytest.skip(f"HIGGS is not on disk here ({err})")
    assert [r["key"] for r in records] == [r.key for r in part.runs] and records[0]["variant"] == "floor"
    assert records[0]["steps"] == 0 and 0 < records[1]["least_squares"] <= 1
    again = rp.reproduce(part, tmp_path, progress=False, say=lambda s: None)
    assert again == records  # resumed: nothing recomputed
    rows, floors = load_rows(tmp_path)
    assert [r["probe"] for r in rows] == ["least_squares", "knn"] and len(floors) == 2
    assert (tmp_path / "domains_higgs.png").stat().st_size > 1000


# ------------------------------------------------------------------ the committed results of the whole grid
def test_the_committed_protocol_is_this_version_of_the_code():
    assert json.loads((COMMITTED / "protocol.json").read_text()) == domains.protocol()


@NEEDS_RESULTS
def test_the_committed_summary_covers_every_cell_and_seed_and_matches_the_records():
    records = json.loads((COMMITTED / "runs.json").read_text())["runs"]
    keys = {r.key for r in domains.grid().runs}
    assert {r["key"] for r in records} == keys, "runs.json must hold exactly the protocol's runs"
    rows, floors = load_rows(COMMITTED)
    assert len(rows) + len(floors) == 2 * len(keys) and all(r["accuracy"] is not None for r in rows + floors)
    want_rows, want_floors = summary_rows(records)
    assert sorted(tuple(r.values()) for r in rows) == sorted(tuple(r.values()) for r in want_rows)
    assert sorted(tuple(r.values()) for r in floors) == sorted(tuple(r.values()) for r in want_floors)
    assert "complete" in (COMMITTED / "table.md").read_text().splitlines()[0]


@NEEDS_RESULTS
def test_the_package_carries_the_committed_summary_and_protocol():
    for name in ("summary.csv", "floors.csv", "protocol.json"):
        assert (packaged("domains") / name).read_bytes() == (COMMITTED / name).read_bytes(), \
            f"copy results/domains/{name} to imix_teach/reproduce/domains_results/ (notebook 06 reads it from there)"


MARKER = "<!-- numbers: results/domains/summary.csv -->"


@NEEDS_RESULTS
def test_every_number_quoted_from_the_grid_is_in_the_summary():
    rows, floors = load_rows(COMMITTED)
    allowed = quotable(rows, floors) | set(NUMBER.findall(" ".join(PAPER.values())))  # and the paper's own numbers
    texts = quoting_texts(MARKER)
    assert {"README.md", "docs/results.md"} <= {name for name, _ in texts}
    assert any(name.startswith("06") for name, _ in texts)
    for name, text in texts:
        for number in NUMBER.findall(text.replace("$", "")):
            assert number.replace("−", "-") in allowed, f"{name} quotes {number!r}, which summary.csv does not give"
