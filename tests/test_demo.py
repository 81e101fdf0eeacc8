"""`make demo`: over seeds, with a never-trained floor, an honest axis and a sentence read from its own numbers."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imix_teach.course.demo import DEMO_BATCH, RANDOM_INIT, figure, main, standing, table, verdict
from helpers import result
from imix_teach.engine import RunResult, run
from imix_teach.tables import apart

ROOT = Path(__file__).resolve().parents[1]


def _runs(method: str, linear: list[float], knn: list[float], imix: bool) -> list[RunResult]:
    """Hand-made results in percent, one per seed."""
    return [result(method, 1.0 if imix else None, seed, linear=lin / 100, knn=k / 100)
            for seed, (lin, k) in enumerate(zip(linear, knn))]


def _results() -> list[RunResult]:
    high = [98.0, 98.2, 98.4]
    return (_runs("a", high, [80, 81, 82], False) + _runs("a", high, [90, 91, 92], True)  # bars 80-82 / 90-92
            + _runs("b", high, [80, 82, 84], False) + _runs("b", high, [82, 83, 84], True)  # 80-84 / 82-84: overlap
            + _runs("c", high, [80, 81, 82], False) + _runs("c", high, [70, 71, 72], True))  # behind, apart


def _bars_apart(x: list[float], y: list[float]) -> bool:
    """Written out independently of the library: the intervals mean ± sample std do not intersect."""
    (lo1, hi1), (lo2, hi2) = ((np.mean(v) - np.std(v, ddof=1), np.mean(v) + np.std(v, ddof=1)) for v in (x, y))
    return hi1 < lo2 or hi2 < lo1


@pytest.mark.parametrize("baseline, imix", [
    ([9, 10, 11], [11.5, 12.5, 13.5]),  # 9-11 and 11.5-13.5: apart
    ([9, 10, 11], [11, 12, 13]),  # 9-11 and 11-13 touch: not apart
    ([70, 72, 74], [73, 74, 75]),  # 70-74 and 73-75: overlap
    ([70, 71, 72], [60, 61, 62]),  # apart, i-Mix behind
    ([70, 71, 72], [70, 71, 72]),  # level
])
def test_beyond_the_spread_is_exactly_where_the_bars_do_not_overlap(baseline, imix):
    assert apart(baseline, imix) == _bars_apart(baseline, imix)
    ahead = np.mean(imix) > np.mean(baseline)
    expected = ("helped" if _bars_apart(baseline, imix) else "ahead within the spread") if ahead else \
        ("level" if np.mean(imix) == np.mean(baseline) else "behind")
    assert standing(baseline, imix) == expected


def test_one_value_has_no_spread_to_be_beyond():
    assert not apart([70.0], [90.0])


def test_the_sentence_reads_the_numbers_and_names_the_ceiling():
    results = _results()
    floor = _runs(RANDOM_INIT, [97.0, 97.2, 97.4], [70, 71, 72], False)
    text = verdict(results, floor)
    assert text.startswith("Over 3 seeds, i-Mix helped beyond the spread")
    assert "for a kNN (+10.0);" in text  # the only place where i-Mix is ahead with the bars apart
    assert "ahead within the spread for b kNN (+1.0)" in text
    assert "c kNN (-10.0, beyond the spread)" in text.split("behind for")[1]
    assert "linear probe is near its ceiling on digits: a never-trained encoder already reaches 97.2 %" in text
    assert "kNN is near its ceiling" not in text
    low = verdict(results, _runs(RANDOM_INIT, [60.0, 61.0, 62.0], [70, 71, 72], False))
    assert "ceiling" not in low
    none_helped = verdict([r for r in results if r.method == "c"], floor)
    assert "helped beyond the spread (its mean ± std bar clear of the baseline's) for none;" in none_helped


def test_the_table_gives_mean_and_std_for_every_method_variant_probe_and_the_floor():
    floor = _runs(RANDOM_INIT, [97.0, 97.2, 97.4], [70, 71, 72], False)
    lines = table(_results(), floor).splitlines()
    assert lines[2] == "| a | 98.2 ± 0.2 | 98.2 ± 0.2 | 81.0 ± 1.0 | 91.0 ± 1.0 |"
    assert lines[-1] == "| random init (no pretraining) | 97.2 ± 0.2 |  | 71.0 ± 1.0 |  |"


def test_the_accuracy_axes_start_at_zero_and_show_the_never_trained_floor():
    floor = _runs(RANDOM_INIT, [97.0, 97.2, 97.4], [70, 71, 72], False)
    fig = figure(_results(), floor)
    for ax, level in zip(fig.axes[1:], (97.2, 71.0)):
        assert ax.get_ylim() == (0.0, 100.0)
        assert any(np.allclose(line.get_ydata(), level) for line in ax.get_lines())


def _every_4th_row(name: str, split: str):
    """A quarter of the digits (325 train / 125 test rows): the demo's plumbing, not its numbers, is under test."""
    from imix_teach.data import load

    data = load(name, split)
    return data.subset(range(0, len(data), 4))


@pytest.mark.slow
def test_a_tiny_demo_runs_three_seeds_prints_its_table_and_sentence_and_repeats(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("imix_teach.course.demo.load", _every_4th_row)
    out = main(["--epochs", "1", "--methods", "npair", "--out", str(tmp_path)])
    runs = [r for r in out if r.method != RANDOM_INIT]
    floor = [r for r in out if r.method == RANDOM_INIT]
    assert sorted((r.seed, r.alpha is not None) for r in runs) == [(s, on) for s in range(3) for on in (False, True)]
    assert sorted(r.seed for r in floor) == [0, 1, 2]
    printed = capsys.readouterr().out
    assert table(runs, floor) in printed and verdict(runs, floor) in printed
    header = table(runs, floor).splitlines()[0]
    assert header in (ROOT / "docs" / "results.md").read_text()  # the results page quotes the demo's table
    assert len(json.loads((tmp_path / "demo.json").read_text())) == 9 and (tmp_path / "demo.png").stat().st_size > 0
    again = run("npair", _every_4th_row("digits", "train"), _every_4th_row("digits", "test"), alpha=1.0, epochs=1, seed=2,
                batch_size=DEMO_BATCH, progress=False)
    last = next(r for r in runs if r.seed == 2 and r.alpha is not None)
    assert (again.linear, again.knn) == (last.linear, last.knn)  # same seed, same thread count: same numbers


def test_a_single_seed_is_refused_with_the_reason(capsys):
    with pytest.raises(SystemExit):
        main(["--seeds", "1"])
    assert "--seeds must be >= 2" in capsys.readouterr().err
