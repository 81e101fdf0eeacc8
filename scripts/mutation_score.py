"""Print the mutation score of each mutated file from mutmut's results (make mutate; docs/development.md).

Score = killed / (all - equivalent): mutmut counts a timeout or a crash of the mutant as a kill too, and a
survivor listed in tests/MUTANTS.md (a mutant no test can tell from the original) leaves the denominator.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KILLED = {1, 3, 36, -24, 24, 152, 255, -11, -9}  # failed, pytest error, timeouts, crashes (mutmut's stats.py)


def equivalent() -> set[str]:
    """Mutant names listed in tests/MUTANTS.md as `imix_teach.x...__mutmut_N`."""
    text = (ROOT / "tests" / "MUTANTS.md").read_text() if (ROOT / "tests" / "MUTANTS.md").exists() else ""
    return set(re.findall(r"imix_teach\.[\w.]+__mutmut_\d+", text))


def main() -> int:
    skip = equivalent()
    for meta in sorted((ROOT / "mutants" / "imix_teach").glob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        killed = sum(code in KILLED for code in codes.values())
        survived = {name for name, code in codes.items() if code == 0}
        survivors = sorted(survived - skip)
        counted = len(codes) - len(skip & survived)  # a listed mutant that a test now kills counts as killed
        stale = sorted(skip & (set(codes) - survived))
        print(f"{meta.name[:-5]:12s} {killed}/{len(codes)} killed ({100 * killed / max(len(codes), 1):.1f}%); "
              f"non-equivalent {killed}/{counted} ({100 * killed / max(counted, 1):.1f}%), "
              f"{len(survivors)} unexplained survivors")
        for name in survivors:
            print("   ", name)
        for name in stale:
            print("    killed now, drop it from tests/MUTANTS.md:", name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
