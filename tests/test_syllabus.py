"""docs/syllabus.md: its generated part matches the notebooks (scripts/syllabus.py), every notebook is in
exactly one session, and the page's reading and run times are the ones the notebooks' Time lines state."""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import course_table  # noqa: E402
import syllabus  # noqa: E402

PAGE = (ROOT / "docs" / "syllabus.md").read_text(encoding="utf-8")


def test_the_page_is_generated_from_the_current_notebooks():
    assert syllabus.updated(PAGE) == PAGE, "docs/syllabus.md is stale: run python scripts/syllabus.py"


def test_every_notebook_is_in_one_session_in_course_order():
    numbers = [n for session in syllabus.SESSIONS for n in session[0]]
    assert numbers == [p.name[:2] for p in course_table.notebooks()]
    assert len(syllabus.SESSIONS) == 6


def test_the_page_states_each_notebooks_times_from_its_time_line():
    for path in course_table.notebooks():
        quick, full = course_table.times(path)
        minutes = syllabus.reading_minutes(path)
        line = f"notebooks/{path.name})**: {minutes} min of reading and exercises; runs in {quick} (quick mode) or {full} (full mode)."
        assert line in PAGE, f"{path.name}: the page does not state {minutes} min, {quick}, {full}"
        assert re.search(rf"\b{minutes}\b", course_table.time_line(path))
    for k, (numbers, _, _) in enumerate(syllabus.SESSIONS, 1):
        paths = [next(course_table.notebooks()[i] for i, p in enumerate(course_table.notebooks()) if p.name.startswith(n))
                 for n in numbers]
        row = next(r for r in PAGE.splitlines() if r.startswith(f"| {k} |"))
        assert row.endswith(f"| {' + '.join(course_table.times(p)[1] for p in paths)} |")
        assert f"{sum(syllabus.reading_minutes(p) for p in paths)} min" in row


def test_a_session_fits_90_minutes_with_time_for_a_lecture():
    for numbers, _, _ in syllabus.SESSIONS:
        paths = [p for p in course_table.notebooks() if p.name[:2] in numbers]
        assert sum(syllabus.reading_minutes(p) for p in paths) <= 80
