"""What the grader runs inside a student's kernel once the notebook has run: each checker on the student's function.

:func:`report` is called from one cell the grader appends to its copy of the notebook. It first
notes whether the notebook replaced a checker, either by defining its own ``check_...`` or by
assigning into :mod:`imix_teach.course.exercises`, then reloads the checker modules from the
installed library (so a replaced checker grades nothing) and calls each checker on the student's
function, capturing the verdict it prints. The results come back as one JSON line after MARKER.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import re
import types
from typing import Any

MARKER = "IMIX_GRADES_JSON:"
_CASE_OK = re.compile(r"\(case \d+\): matches the library\.$")  # per-case lines; the summary line says it all


def _functions(module: types.ModuleType) -> dict[str, Any]:
    # Imported ones too: replacing nb01.mixup would change what the checker compares against.
    return {name: value.__code__ for name, value in vars(module).items() if isinstance(value, types.FunctionType)}


def _reload(module_names: list[str]) -> tuple[dict[str, types.ModuleType], list[str]]:
    """Reload the package and the checker modules; name every function the notebook had replaced."""
    names = ["imix_teach.course.exercises", *dict.fromkeys(module_names)]
    before = {name: dict(vars(importlib.import_module(name))) for name in names}
    replaced = []
    fresh = {}
    for name in names:
        module = importlib.reload(importlib.import_module(name))
        fresh[name] = module
        for fn, code in _functions(module).items():
            old = before[name].get(fn)
            if getattr(old, "__code__", None) != code:
                replaced.append(f"{name}.{fn}")
    return fresh, replaced


def _verdict(checker: Any, student: Any) -> tuple[bool, str]:
    """Call the checker on the student's function; return (solved, what the checker printed)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            solved = checker(student) is True
        except Exception as err:  # a checker raises only when the student's function breaks it
            print(f"[x] the checker raised {type(err).__name__}: {err}")
            solved = False
    lines = [line.strip() for line in out.getvalue().splitlines() if line.strip() and not _CASE_OK.search(line)]
    return solved, " | ".join(lines)


def report(namespace: dict[str, Any], exercises: list[dict[str, str]]) -> None:
    """Print MARKER and one JSON list: per exercise {"exercise", "defined", "solved", "message", "edited"}.

    ``namespace`` is the notebook's globals; ``exercises`` holds dicts with keys id, function,
    checker (``nbXX.check_name``) and module (the checker's module).
    """
    modules, replaced = _reload([e["module"] for e in exercises])
    results = []
    for e in exercises:
        name = e["checker"].partition(".")[2]
        library = getattr(modules[e["module"]], name)
        own = namespace.get(name)
        edited = [f"`{name}` is redefined in the notebook"] if own is not None and getattr(
            own, "__code__", None) != library.__code__ else []
        edited += [f"`{r}` was replaced" for r in replaced]
        student = namespace.get(e["function"])
        if student is None:
            results.append(dict(exercise=e["id"], defined=False, solved=False, message="", edited=edited))
            continue
        solved, message = _verdict(library, student)
        results.append(dict(exercise=e["id"], defined=True, solved=solved, message=message, edited=edited))
    print(MARKER + json.dumps(results))
