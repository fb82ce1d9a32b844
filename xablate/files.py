"""The one way xablate writes a run's files: whole or not at all, and a clear error when the disk is full.

`write_atomic` writes a temporary file beside the target, flushes it to disk, then renames it over the
target, so a reader (or the next run after a crash) sees either the old file or the new one, never half of
one. On any failure the temporary file is removed and the old file is left as it was. Files are created
with the process's umask (0644 under umask 022), as `open` would, not with `mkstemp`'s 0600.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import WriteError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def write_error(path: Path, err: OSError, needed: int | None = None) -> WriteError:
    """A one-line `WriteError` for `path`: the reason and, when space ran out, how much was needed."""
    reason = err.strerror or type(err).__name__
    message = f"could not write {path}: {reason}"
    if err.errno in NO_SPACE and needed is not None:
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            free = None
        message += f" (needs {_megabytes(needed)}"
        message += f", {_megabytes(free)} free)" if free is not None else ")"
    message += "; the previous file, if any, is unchanged"
    return WriteError(message)


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace `path` by `data` atomically; raise `WriteError` (temporary file removed) if it cannot be."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as err:
        raise write_error(path, err, len(raw)) from None
    try:
        try:
            _write_fd(fd, raw)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise write_error(path, err, len(raw)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def append_text(path: Path, text: str) -> None:
    """Append `text` to `path`; raise `WriteError` if the disk will not take it."""
    try:
        with path.open("a", newline="") as fh:
            fh.write(text)
    except OSError as err:
        raise write_error(path, err, len(text.encode())) from None


def archive(folder: Path, paths: list[Path]) -> Path:
    """Move `paths` (inside `folder`) into a new `folder/archive/<UTC time>/`; return that folder."""
    dest = folder / "archive" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    dest.mkdir(parents=True)
    for path in paths:
        shutil.move(str(path), dest / path.name)
    return dest


def unwritable_reason(path: Path) -> str | None:
    """Why `path` could not be created (if missing) or hold files, or None when it can. Creates nothing but
    a probe file, removed at once, in `path` or in the nearest folder above it that exists."""
    existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is not a folder"
    probe = existing / f".xablate-probe-{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        probe.unlink()
    except OSError as err:
        where = "" if existing == path.absolute() else f" (nothing can be made in {existing})"
        return f"{err.strerror or err}{where}"
    return None
