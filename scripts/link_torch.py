"""Expose this environment's torch, torchvision and torchaudio (with what they need) to another venv.

    python scripts/link_torch.py DEST    # DEST/<package> -> symlinks into this site-packages

A hosted runtime such as Colab comes with torch preinstalled. scripts/hosted_check.sh mimics that
without installing gigabytes again: it builds a folder of symlinks to exactly these packages,
their dist-info (so pip sees them installed) and their dependencies, and puts that folder on the
new venv's path with a .pth file. Nothing else of this environment leaks in.
"""
from __future__ import annotations

import importlib.metadata as md
import re
import sys
from pathlib import Path

ROOTS = ("torch", "torchvision", "torchaudio")


def closure(names: tuple[str, ...] = ROOTS) -> list[md.Distribution]:
    """The installed distributions `names` need, transitively (extras and absent optional ones skipped)."""
    todo, seen, found = list(names), set(), []
    while todo:
        key = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = md.distribution(key)
        except md.PackageNotFoundError:  # platform-specific or optional requirement
            continue
        found.append(dist)
        todo += [re.match(r"[A-Za-z0-9_.\-]+", r).group() for r in dist.requires or [] if "extra ==" not in r]
    return found


def link(dest: Path) -> int:
    """Symlink each top-level file or folder of the closure into `dest`; returns how many."""
    dest.mkdir(parents=True, exist_ok=True)
    tops = {(dist, file.parts[0]) for dist in closure() for file in dist.files or []}
    tops = {(dist, top) for dist, top in tops if top not in ("..", "__pycache__") and not top.endswith(".pth")}
    for dist, top in tops:
        source, target = Path(dist.locate_file(top)), dest / top
        if source.exists() and not target.exists():
            target.symlink_to(source.resolve())
    return len(list(dest.iterdir()))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(f"linked {link(Path(sys.argv[1]))} entries of {', '.join(ROOTS)} and their dependencies")
