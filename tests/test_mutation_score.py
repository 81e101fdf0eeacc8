"""scripts/mutation_score.py: the score leaves out only the listed mutants that survived."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("mutation_score", ROOT / "scripts" / "mutation_score.py")
mutation_score = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mutation_score)


def test_a_listed_mutant_that_is_killed_counts_as_killed_and_is_reported_stale(tmp_path, monkeypatch, capsys):
    (tmp_path / "mutants" / "imix_teach").mkdir(parents=True)
    codes = {"imix_teach.m.x_f__mutmut_1": 1, "imix_teach.m.x_f__mutmut_2": 0,   # killed, survived (listed)
             "imix_teach.m.x_f__mutmut_3": 0, "imix_teach.m.x_f__mutmut_4": 1}   # survived, killed (listed)
    (tmp_path / "mutants" / "imix_teach" / "m.py.meta").write_text(json.dumps({"exit_code_by_key": codes}))
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "MUTANTS.md").write_text("- imix_teach.m.x_f__mutmut_2 — same value\n"
                                                  "- imix_teach.m.x_f__mutmut_4 — same value\n")
    monkeypatch.setattr(mutation_score, "ROOT", tmp_path)
    mutation_score.main()
    out = capsys.readouterr().out
    assert "m.py         2/4 killed (50.0%); non-equivalent 2/3 (66.7%), 1 unexplained survivors" in out
    assert "    imix_teach.m.x_f__mutmut_3" in out
    assert "drop it from tests/MUTANTS.md: imix_teach.m.x_f__mutmut_4" in out
