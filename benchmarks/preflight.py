"""How long a command waits before its first cell starts: `check_command` over a study's cells.

Every `python -m xablate` first composes and validates each cell of its command (xablate/sweep/check.py).
This times that check for `--command` (default: the 95 cells of `experiment=fig10`), in a fresh process
per repetition, for this tree and, with `--against COMMIT`, for COMMIT checked out into a temporary git
worktree; the two alternate (old, new, old, new...) so that machine drift hits both. Printed as Markdown.

Usage: python benchmarks/preflight.py [--against 8ec3fe1] [--reps 3] [--command "experiment=fig10"]
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from train_speed import checkout

TIMER = """
import sys, time
try:  # the layered package
    from xablate.spec.resolvers import register_resolvers
    from xablate.spec.schema import register_configs
    from xablate.sweep.check import check_command
except ImportError:  # a commit of the flat package
    from xablate.config import register_configs
    from xablate.identity import register_resolvers
    from xablate.preflight import check_command
register_configs(); register_resolvers()
start = time.perf_counter()
command = check_command(sys.argv[1:])
print(len(command.cells), time.perf_counter() - start)
"""


def time_check(root: Path, argv: list[str]) -> tuple[int, float]:
    """Cells and seconds of one `check_command(argv)`, in a new process importing `xablate` from `root`."""
    out = subprocess.run([sys.executable, "-c", TIMER, *argv], cwd=root, capture_output=True, text=True, check=True)
    cells, seconds = out.stdout.split()[-2:]
    return int(cells), float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--command", default="experiment=fig10", help="the xablate arguments to check")
    parser.add_argument("--against", help="a commit to time side by side with this tree")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    argv = shlex.split(args.command)
    here = Path(__file__).resolve().parents[1]
    trees = {"this tree": here}
    with checkout(args.against) if args.against else contextlib.nullcontext() as old:
        if old is not None:
            trees = {args.against: old, "this tree": here}
        times: dict[str, list[float]] = {name: [] for name in trees}
        cells = 0
        for _ in range(args.reps):
            for name, root in trees.items():
                cells, seconds = time_check(root, argv)
                times[name].append(seconds)
    print(f"`check_command` for `{args.command}` ({cells} cells), {args.reps} fresh processes each, "
          f"{platform.processor() or platform.machine()}\n")  # fmt: skip
    print("| code | median s | s per cell |\n|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {median / max(cells, 1):.3f} |")


if __name__ == "__main__":
    main()
