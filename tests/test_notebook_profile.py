"""benchmarks/notebook_profile.py attributes a notebook's time to the library's kinds of work, exclusively."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import notebook_profile as npf  # noqa: E402


def test_the_wrappers_time_nested_calls_once():
    ns: dict = {"KINDS": {"pretraining": ["imix_teach.train:pretrain"], "probes": ["imix_teach.evaluate:knn_accuracy"]}}
    import imix_teach.evaluate as ev
    import imix_teach.train as tr

    saved = (tr.pretrain, ev.knn_accuracy)
    try:
        exec(npf._INSTALL, ns)
        import imix_teach.engine as engine
        assert engine.evaluate_encoder.__module__ == "imix_teach.evaluate"
        assert ev.knn_accuracy is not saved[1] and ev.knn_accuracy.__wrapped__ is saved[1]
        # a pretrain that calls a probe: each second is counted once, in the innermost kind. A fake clock
        # (the wrappers read ``time.perf_counter`` from their module's globals): no wall-clock threshold.
        class Clock:
            now = 0.0

            def perf_counter(self):
                return self.now

            def sleep(self, seconds):
                self.now += seconds

        clock = ns["time"] = Clock()

        def fake_pretrain():
            clock.sleep(0.05)
            ns["_timed"]("probes", lambda: clock.sleep(0.1))()
            clock.sleep(0.02)
        ns["_timed"]("pretraining", fake_pretrain)()
        assert ns["_PROFILE"]["pretraining"] == pytest.approx(0.07) and ns["_PROFILE"]["probes"] == pytest.approx(0.1)
    finally:
        for m in list(sys.modules.values()):  # undo the wrapping in every module that took it
            for orig in saved:
                if getattr(m, "__name__", "").startswith("imix_teach") and \
                        getattr(getattr(m, orig.__name__, None), "__wrapped__", None) is orig:
                    setattr(m, orig.__name__, orig)


@pytest.mark.slow
def test_a_quick_profile_of_one_notebook(tmp_path):
    import nbformat

    path = ROOT / "notebooks" / "02_virtual_labels.ipynb"
    row = npf.profile_notebook(path, quick=True, save=tmp_path)
    saved, submitted = (nbformat.read(p, as_version=4) for p in (tmp_path / path.name, path))
    # the executed copy: the notebook's own cells, run in order from 1, without the profiling cells
    assert [c.source for c in saved.cells] == [c.source for c in submitted.cells]
    counts = [c.execution_count for c in saved.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))
    kinds = [row[k] for k in npf.KINDS]
    assert row["notebook"] == "02_virtual_labels.ipynb" and all(v >= 0 for v in kinds)
    assert row["rest"] == pytest.approx(row["wall_s"] - sum(kinds), abs=0.2) and row["rest"] > 0
