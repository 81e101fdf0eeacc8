"""Is this the data file it should be? Its sha256 against the copies we know and the records we keep.

A loader names the copies it knows (``known``: sha256 -> what that copy is: the file its
distributors publish, or a part the course ships). A file that is none of them is checked
against a record of its own digest:

- ``<file>.sha256`` beside it, written by :func:`~imix_teach.data.base.fetch` after a checked download;
- or, for a file put in place by hand, the record :func:`remember` keeps after its first
  successful load, in the per-user cache (``<cache>/checksums/``): never in the data folder,
  which may be shared or read-only.

A file with neither is new: its loader reads it, and :func:`remember` records it (with a warning
saying so), so any later change is refused with the file's path and the fix.
"""
from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from pathlib import Path

from ..config import cache_home
from ..files import atomic_write


def digest(path: Path, name: str = "sha256") -> str:
    """The hex digest (``name``: any hashlib algorithm) of the file at ``path``, read in 1 MB blocks."""
    h = hashlib.new(name)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def digest_record(path: Path) -> Path:
    """``<file>.sha256``: where :func:`~imix_teach.data.base.fetch` keeps the sha256 of a download it checked."""
    return path.with_name(path.name + ".sha256")


def first_load_record(path: Path) -> Path:
    """Where :func:`remember` keeps the sha256 of a hand-placed file: the per-user cache, keyed by its absolute path."""
    key = hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:16]
    return cache_home() / "checksums" / f"{path.name}-{key}.sha256"


def _record(path: Path) -> Path | None:
    return next((r for r in (digest_record(path), first_load_record(path)) if r.is_file()), None)


def problem(path: Path, known: Mapping[str, str]) -> str | None:
    """What is wrong with ``path``'s sha256 (None: a known copy, one matching its record, or a new file)."""
    actual = digest(path)
    record = None if actual in known else _record(path)
    if record is None:
        return None
    expected = record.read_text().split()[0]
    if actual == expected:
        return None
    return (f"its sha256 is not the expected {expected} (recorded in {record} when it was downloaded or first "
            f"loaded; now {actual}). If you changed or replaced it on purpose with a file you trust, delete {record}")


def remember(path: Path, known: Mapping[str, str], dataset: str) -> None:
    """After a new file's first successful load: record its sha256 so a later change is refused, and say so.

    Nothing is done for a known copy or a file that already has a record.
    """
    if _record(path) is not None:
        return
    actual = digest(path)
    if actual in known:
        return
    record = first_load_record(path)
    try:
        atomic_write(record, f"{actual}  {Path(path).resolve()}\n")
        kept = f"its sha256 is now recorded in {record}, so a later change to it is refused"
    except OSError as err:
        kept = f"its sha256 could not be recorded ({err}), so a later change to it will go unnoticed"
    copies = "; ".join(f"{what} (sha256 {d[:12]}...)" for d, what in known.items()) or "none"
    warnings.warn(f"{dataset}: {path} is not a copy this library knows (known: {copies}). It loaded, and {kept}. "
                  "If it is not the file you meant, delete it and load with download=True.", stacklevel=4)
