"""Writing files so that nothing a user made is lost: atomic replacement, safe for two writers at once."""
from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | os.PathLike, data: str | bytes | Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` via a uniquely named temporary file + fsync + ``os.replace``.

    data: text, bytes, or a function that writes to the open binary file (e.g. ``torch.save``).
    The temporary file is created exclusively (a planted file or symlink there is an error, never
    followed) with a unique name, so two processes can write the same file at once; on any error
    (a full disk, a kill) the old file stays as it was and the temporary one is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as fh:  # mode from the umask, like any new file
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise type(err)(err.errno, f"could not write {path} ({err.strerror or err}); free disk space or "
                                     "fix the folder's permissions and run again") from err
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """``obj`` as indented JSON, written atomically."""
    atomic_write(path, json.dumps(obj, indent=1))
