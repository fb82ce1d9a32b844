"""One process per cell folder: an exclusive lock file that says who holds it.

The lock is a file created with `O_CREAT | O_EXCL`, which is atomic on local disks and on the NFS and
parallel file systems clusters share between nodes (unlike `flock`, which NFS may not honour across hosts).
It records the holder's host, pid and start time, and its SLURM job id and restart count when it has them.
A lock is stale, and is taken over, when its holder is on this host and that pid is gone, or when it was
taken by an earlier start of this same SLURM job (a requeued job may restart on another node). Any other
lock held on another host is never broken automatically: delete the file by hand once that process is
known to be gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..files import write_error

LOCK = ".lock"


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    since: str
    slurm_job: str = ""
    slurm_restart: int = 0

    def __str__(self) -> str:
        return f"{self.host}, pid {self.pid}, since {self.since}"


class CellBusy(Exception):
    """The cell folder is locked by a live process; `holder` says which."""

    def __init__(self, folder: Path, holder: Holder | None) -> None:
        self.folder, self.holder = folder, holder
        if holder is None:
            super().__init__(
                f"{folder.name}: locked by {folder / LOCK}, which cannot be read (being written, or damaged); "
                "nothing trained here (delete it if no process runs this cell)"
            )
        else:
            super().__init__(f"{folder.name}: running elsewhere ({holder}); nothing trained here")


def _me() -> Holder:
    return Holder(
        host=socket.gethostname(),
        pid=os.getpid(),
        since=datetime.now(UTC).isoformat(timespec="seconds"),
        slurm_job=os.environ.get("SLURM_JOB_ID", ""),
        slurm_restart=int(os.environ.get("SLURM_RESTART_COUNT") or 0),
    )


def _parse(path: Path) -> Holder | None:
    try:
        data = json.loads(path.read_text())
        slurm = (str(data.get("slurm_job", "")), int(data.get("slurm_restart", 0)))
        return Holder(str(data["host"]), int(data["pid"]), str(data["since"]), *slurm)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_holder(folder: Path) -> Holder | None:
    """The holder recorded in `folder`'s lock, or None when there is no lock (or it cannot be parsed)."""
    return _parse(folder / LOCK)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(holder: Holder) -> bool:
    """The holder is gone: its pid has ended on this host, or SLURM has since requeued its job (this
    process runs a later restart of the same job id, wherever the earlier one ran)."""
    me = _me()
    if holder.slurm_job and holder.slurm_job == me.slurm_job and holder.slurm_restart < me.slurm_restart:
        return True
    return holder.host == me.host and not _alive(holder.pid)


def holder_if_live(folder: Path) -> Holder | None:
    """Who holds `folder` now, or None when it is free or its lock is stale."""
    holder = read_holder(folder)
    return None if holder is None or is_stale(holder) else holder


def _create(path: Path, holder: Holder) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    except OSError as err:
        raise write_error(path, err) from None
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(asdict(holder)) + "\n")
    return True


def _break_stale(path: Path, stale: Holder) -> None:
    """Move the stale lock aside and delete it; if another process replaced it meanwhile with a live lock,
    put that one back instead."""
    aside = path.with_name(f"{LOCK}.stale.{os.getpid()}")
    try:
        path.replace(aside)
    except FileNotFoundError:
        return
    if _parse(aside) != stale:
        with contextlib.suppress(OSError):
            os.link(aside, path)
    aside.unlink(missing_ok=True)


def acquire(folder: Path) -> Holder:
    """Lock `folder` for this process, taking over a stale lock; raise `CellBusy` if a live one holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    me = _me()
    for _ in range(3):
        if _create(path, me):
            return me
        holder = read_holder(folder)
        if holder is not None and not is_stale(holder):
            raise CellBusy(folder, holder)
        if holder is None and path.exists():
            raise CellBusy(folder, None)
        if holder is not None:
            _break_stale(path, holder)
    raise CellBusy(folder, read_holder(folder))


def release(folder: Path, holder: Holder) -> None:
    """Remove `folder`'s lock if it is still `holder`'s."""
    if read_holder(folder) == holder:
        (folder / LOCK).unlink(missing_ok=True)


@contextlib.contextmanager
def cell_lock(folder: Path) -> Iterator[Holder]:
    holder = acquire(folder)
    try:
        yield holder
    finally:
        release(folder, holder)
