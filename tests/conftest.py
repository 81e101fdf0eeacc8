"""How the suite shares a few CPU cores when `make test` runs it with pytest-xdist (`-n auto --dist loadfile`).

- ``--dist loadfile`` hands each file to one worker whole: a notebook's cells run in order in one kernel,
  and a module-scoped fixture (a training run, a pair of processes, the built site) runs once.
- Files with long tests start first, long tests first inside them, and the many short ones fill the gaps
  at the end, so the workers finish together instead of one of them running a long test alone at the end
  (with ``--no-loadscope-reorder``, xdist keeps this order instead of sorting files by their number of tests).
- Each worker computes with one thread, and so do the notebook kernels and subprocesses it starts
  (they inherit ``OMP_NUM_THREADS``): as many workers as cores, and no threads spinning against each other.

Without ``-n`` none of this changes anything but the order of the tests.
"""
from __future__ import annotations

import os

import pytest
from hypothesis import settings

# Every run of the suite (CI, `make test`) draws the same hypothesis cases: a failure there is a bug in the code,
# never a new random draw. No example database either, so no run depends on an earlier one.
# A developer fuzzing by hand gets fresh draws: HYPOTHESIS_PROFILE=dev.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

# The longest tests, longest first (on 2 busy cores): their files start first, in this order, one on each worker.
LONGEST = ("test_every_page_renders_in_chromium",  # ~60 s: every page of the built site (tests/test_site.py)
           "test_solved_notebooks_pass_nbval",  # ~50 s: notebooks 08-10 once more, solved (tests/test_exercises_hints.py)
           "test_torchrun_pretrain_command_trains_evaluates_once_and_resumes")  # ~30 s: two torchrun runs
LAST = len(LONGEST) + 2


def _start_order(item: pytest.Item) -> int:
    """0, 1, ...: the LONGEST tests in that order; then long tests (marked slow), notebooks, the rest."""
    if item.name in LONGEST:
        return LONGEST.index(item.name)
    if item.get_closest_marker("slow"):
        return len(LONGEST)
    return LAST - 1 if item.path.suffix == ".ipynb" else LAST


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order whole files by their longest test, and long tests first inside a file: xdist queues the next file
    for a worker as its current one nears its end, and that file would wait behind a long last test.
    The sort is stable: a notebook's cells, and tests of equal rank, keep their order."""
    rank: dict = {}
    for item in items:
        rank[item.path] = min(rank.get(item.path, LAST), _start_order(item))
    items.sort(key=lambda item: (rank[item.path], _start_order(item)))
