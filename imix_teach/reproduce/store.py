"""``runs.json`` and the locks that let several ``reproduce`` processes share one output folder."""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ..files import atomic_write
from .grid import GridRun

class ResultStore:
    """``runs.json``: one record per finished run, safe to share between processes.

    Every write takes a file lock, re-reads the file and merges, so two ``reproduce`` processes
    on one folder keep each other's records; the file is replaced atomically (a unique temporary
    name + ``os.replace``), so a reader or a kill mid-write sees the old file or the new one.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock = FileLock(f"{self.path}.lock")
        self.records: dict[str, dict[str, Any]] = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        try:
            return {r["key"]: r for r in json.loads(self.path.read_text())["runs"]}
        except (ValueError, KeyError, TypeError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ValueError(
                f"{self.path} cannot be read as a run store ({type(err).__name__}: {err}). Restore it, or move "
                "it aside to start over (the runs it listed are then recomputed)."
            ) from err

    def refresh(self) -> None:
        """Pick up the runs other processes have saved since."""
        self.records = {**self.records, **self._read()}

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def add(self, record: dict[str, Any]) -> None:
        """Save one run's record: lock, re-read, merge, replace the file atomically."""
        with self.lock:
            self.refresh()  # merge on write: never drop what another process saved meanwhile
            self.records[record["key"]] = record
            atomic_write(self.path, json.dumps({"runs": list(self.records.values())}, indent=1))

    def select(self, keys: Iterable[str]) -> list[dict[str, Any]]:
        """The records of these keys that are saved, in the keys' order."""
        return [self.records[k] for k in keys if k in self.records]


def file_name(key: str) -> str:
    """A run key as one file name (keys hold slashes)."""
    return key.replace("/", "__")


def claimed(runs: Sequence[GridRun], folder: Path) -> Iterator[GridRun]:
    """Yield each run while holding its lock, so two processes on one grid never run the same one.

    A run another process holds is put off to the end and then waited for (its record is then in
    the store). The kernel drops a killed process's locks, so nothing stays stuck after kill -9.
    """
    folder.mkdir(parents=True, exist_ok=True)
    later: list[GridRun] = []
    for wait, queue in ((False, runs), (True, later)):
        for run in queue:
            lock = FileLock(folder / f"{file_name(run.key)}.lock", timeout=-1 if wait else 0)
            try:
                lock.acquire()
            except Timeout:
                later.append(run)
                continue
            try:
                yield run
            finally:
                lock.release()


def check_writable(out: Path, store: ResultStore) -> None:
    """Fail now, naming ``out``, if results cannot be written there (not after an hour of training)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with store.lock:
            atomic_write(out / ".write-test", "")
            (out / ".write-test").unlink()
    except OSError as err:
        raise PermissionError(
            f"out={str(out)!r} is not a writable folder ({type(err).__name__}: {err}); choose another --out "
            "or fix its permissions"
        ) from err
