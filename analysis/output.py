"""The analysis' output folder: checked before any work, written file by file, and described by a manifest.

The folder holds only derived files, regenerated on every run of the analysis. A manifest, `analysis.json`,
lists them: a folder without one is never written into (it may hold a user's files), and a file that an
earlier analysis wrote but this one does not (a figure the new selection cannot draw) is removed, so the
folder never shows stale results. Nothing the manifest does not list is ever deleted or replaced.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from xablate.files import unwritable_reason, write_atomic

MANIFEST = "analysis.json"


class OutputError(ValueError):
    """The output folder cannot be used (one line for the user)."""


def _is_output(folder: Path) -> bool:
    """An earlier analysis' output: it has a manifest, or holds only such folders (one per `--where`)."""
    if (folder / MANIFEST).is_file():
        return True
    entries = list(folder.iterdir())
    return bool(entries) and all(e.is_dir() and _is_output(e) for e in entries)


def check_out(out: Path) -> None:
    """Refuse a folder that cannot be created or written, or that holds anything but an earlier analysis'
    output."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; allowed: a new folder, an empty one, or an earlier analysis output")
    reason = unwritable_reason(out)
    if reason is not None:
        raise OutputError(f"--out {out} cannot be created or written: {reason}")
    if out.is_dir() and any(out.iterdir()) and not _is_output(out):
        raise OutputError(
            f"--out {out} holds files that analysis did not write (no {MANIFEST}); "
            "allowed: a new folder, an empty one, or an earlier analysis output"
        )


class Output:
    """The files of one analysis in `out`, each written to a temporary file and renamed into place."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.files: list[Path] = []
        out.mkdir(parents=True, exist_ok=True)

    def write_text(self, path: Path, content: str) -> None:
        write_atomic(path, content)
        self.add([path])

    def add(self, paths: Sequence[Path]) -> None:
        self.files += [p for p in paths if p not in self.files]

    def finish(self, details: Mapping[str, Any]) -> list[Path]:
        """Remove what the previous manifest listed and this analysis did not write; write the manifest."""
        manifest = self.out / MANIFEST
        removed = []
        try:
            previous = json.loads(manifest.read_text()).get("files", [])
        except (OSError, ValueError, AttributeError):
            previous = []
        current = {p.name for p in self.files}
        for name in previous:
            path = self.out / str(name)
            if str(name) not in current and path.parent == self.out and path.is_file():
                path.unlink()
                removed.append(path)
        record = {
            "written_by": "python -m analysis",
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **details,
            "files": sorted(current),
        }
        self.write_text(manifest, json.dumps(record, indent=2, default=str) + "\n")
        return removed
