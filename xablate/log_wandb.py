"""`python -m xablate.log_wandb RUNS...` (also `xablate-log-wandb`): runs trained without W&B become W&B runs.

A run trained where W&B was absent or turned off (`logger.mode=disabled`, a GPU node without wandb, an
air-gapped machine) keeps its whole record on disk: the config Hydra saved, every metrics row, its summary.
This logs each completed run folder as the W&B run its training would have written live, through the live
path's own `Tracker` and row mapping (`engine.log.replay`): the same id (`<run key>-<attempt>`), group, job
type, name, tags, config, history and summary, offline by default, into the folder's `wandb/`. Its id then
goes into `summary.json`'s `wandb_id`, as a live run's does. A run copied from another study (`reused_from`)
gets what a live copy gets: the original run's tags updated with every study it is in.

A folder that already holds a W&B run of that id (logged live, or by an earlier call) is not logged again;
a folder that is not a completed run is named and skipped; a bad argument is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .cell.wandb_after import CONFIG, log_run
from .engine.log import METRICS
from .spec.record import SUMMARY, read_summary

PROG = "xablate-log-wandb"
NOT_SEARCHED = frozenset({"archive", "wandb", ".hydra"})
"""Folders never searched for runs: earlier attempts, W&B's files, Hydra's."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        fail(message)


def fail(message: object) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    sys.exit(2)


def build_parser() -> Parser:
    parser = Parser(prog=PROG, description="Log completed xablate runs trained without W&B as W&B runs.")
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUNS", help="run folders, or folders holding them")
    parser.add_argument(
        "--mode",
        choices=("offline", "online"),
        default="offline",
        help="offline (default: into each run's wandb/, for `wandb sync`) or online (offline when W&B is unreachable)",
    )
    return parser


def run_folders(paths: Sequence[Path]) -> list[Path]:
    """The folders holding a `summary.json` among `paths` and below them, each once, in path order."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            fail(f"{path} does not exist; allowed: a run folder, or a folder holding run folders")
        if not path.is_dir():
            fail(f"{path} is not a folder; allowed: a run folder, or a folder holding run folders")
        here = [p.parent for p in sorted(path.rglob(SUMMARY)) if not NOT_SEARCHED & set(p.relative_to(path).parts)]
        if not here:
            fail(f"no run folders in {path} (a run folder holds {SUMMARY}, {METRICS} and {CONFIG})")
        found += [folder for folder in here if folder not in found]
    return found


def sync_hint(offline_runs: Sequence[Path]) -> str:
    """The `wandb sync` command for the offline runs: one pattern per study folder, as a sweep prints it."""
    patterns = sorted({str(run.parent.parent.parent / "*" / "wandb" / "offline-run-*") for run in offline_runs})
    return f"W&B (offline): wandb sync {' '.join(patterns)}"


WORDS = {"logged": "logged", "already": "logged earlier", "skipped": "skipped", "failed": "failed"}


def main(argv: Sequence[str] | None = None) -> int:
    """Log every folder the arguments name; exit status 1 when W&B failed on one, 2 on a bad argument."""
    args = build_parser().parse_args(argv)
    folders = run_folders(args.runs)
    if importlib.util.find_spec("wandb") is None:
        print(f"{PROG}: error: wandb is not installed here (pip install wandb)", file=sys.stderr)
        return 1
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"{PROG}: warning: %(message)s"))
    logging.getLogger("xablate").addHandler(handler)
    logging.getLogger("xablate").setLevel(logging.WARNING)
    outcomes = []
    for folder in sorted(folders, key=lambda f: "reused_from" in (read_summary(f) or {})):  # originals first
        outcomes.append(log_run(folder, args.mode))
        print(outcomes[-1].line, flush=True)
    counts = {kind: sum(o.kind == kind for o in outcomes) for kind in ("logged", "already", "skipped", "failed")}
    print(f"{PROG}: " + ", ".join(f"{n} {WORDS[kind]}" for kind, n in counts.items() if n), flush=True)
    offline = [o.offline_run for o in outcomes if o.offline_run is not None]
    if offline:
        print(sync_hint(offline), flush=True)
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
