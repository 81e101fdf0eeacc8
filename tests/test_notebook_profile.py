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
        # a pretrain that calls a probe: each second is counted once, in the innermost kind
        import time

        def fake_pretrain():
            time.sleep(0.05)
            ns["_timed"]("probes", lambda: time.sleep(0.1))()
        ns["_timed"]("pretraining", fake_pretrain)()
        assert 0.04 < ns["_PROFILE"]["pretraining"] < 0.09 and 0.09 < ns["_PROFILE"]["probes"] < 0.2
    finally:
        for m in list(sys.modules.values()):  # undo the wrapping in every module that took it
            for orig in saved:
                if getattr(m, "__name__", "").startswith("imix_teach") and \
                        getattr(getattr(m, orig.__name__, None), "__wrapped__", None) is orig:
                    setattr(m, orig.__name__, orig)


@pytest.mark.slow
def test_a_quick_profile_of_one_notebook(tmp_path):
    row = npf.profile_notebook(ROOT / "notebooks" / "02_virtual_labels.ipynb", quick=True)
    kinds = [row[k] for k in npf.KINDS]
    assert row["notebook"] == "02_virtual_labels.ipynb" and all(v >= 0 for v in kinds)
    assert row["rest"] == pytest.approx(row["wall_s"] - sum(kinds), abs=0.2) and row["rest"] > 0
