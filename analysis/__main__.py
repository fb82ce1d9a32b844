"""`python -m analysis`: Figures 9, 10 and 11 and the summary table from a study's run folders (or W&B runs).
Over 250 lines because every flag is checked here, before any work, each failure one line.

    python -m analysis runs/fig11                     # every run under runs/fig11 -> runs/fig11/analysis/
    python -m analysis runs/ --where residual=true --where activation=none    # one slice of several studies
    python -m analysis --wandb ENTITY/PROJECT --group fig10 --out analysis-fig10   # runs logged online
    python -m analysis experiments/fig10/results --margin 0.5 --plan 0.5   # published frames, and a seed plan

Bad input (a missing folder, an unknown axis or value, no runs) stops with one line, exit status 2, before any
file is written. Runs that cannot be used are listed in one warning and left out.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .axes import AXES, REPLICATE, allowed, parse_value, text

if TYPE_CHECKING:
    from .frames import Runs
    from .report import Report

WHERE_AXES: tuple[str, ...] = (*AXES, REPLICATE)


class UsageError(ValueError):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        fail(message)


def fail(message: object) -> NoReturn:
    print(f"analysis: error: {message}", file=sys.stderr)
    sys.exit(2)


def build_parser() -> Parser:
    parser = Parser(
        prog="analysis",
        description="Figures 9-11 and summary tables from xablate runs (folders, or W&B runs logged online).",
    )
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="folders searched (at any depth) for runs")
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder (default: <first PATH>/analysis, and with --where a subfolder named after it)",
    )
    parser.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="AXIS=VALUE",
        help=f"keep runs with this value (repeatable: AND across axes, OR within one); axes: {', '.join(WHERE_AXES)}",
    )
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="also read the runs of this W&B project (public API)")
    parser.add_argument("--group", help="with --wandb: only the runs of this W&B group (a study)")
    add_statistics_args(parser)
    parser.add_argument(
        "--wandb-mode",
        choices=("offline", "online", "disabled"),
        default="offline",
        help="the W&B run that logs the figures and tables (default: offline, inside --out)",
    )
    return parser


def add_statistics_args(parser: Parser) -> None:
    """The flags of the comparisons, the looks, a pilot and a seed plan."""
    variance = parser.add_mutually_exclusive_group()
    variance.add_argument(
        "--paired",
        action="store_true",
        help="pair seeds (when both cells ran the same seeds) where the study's config declares no variance model",
    )
    variance.add_argument(
        "--pooled", action="store_true", help="the family's pooled seed SD, where the study declares none"
    )
    parser.add_argument(
        "--margin",
        type=float,
        metavar="POINTS",
        help="equivalence margin in accuracy points when the study's config declares none (default 0.5)",
    )
    parser.add_argument(
        "--looks",
        type=_looks,
        metavar="N1,N2,...",
        help="the registered looks (seed counts, the last the registered N) where the study's config declares none",
    )
    parser.add_argument(
        "--pilot",
        action="store_true",
        help="a pilot report: held-out validation split only (refuses runs without one), and the budget rule",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.1,
        metavar="POINTS",
        help="with --pilot: a budget is converged within this many points of the longest (default 0.1)",
    )
    parser.add_argument(
        "--plan", type=float, metavar="MDE",
        help="seeds per cell to detect MDE points (80%% power, after Holm), and per comparison for MDE as an "
        "equivalence margin on validation top-1 with each cell's own SD (plan_pairs.csv)",
    )


def _looks(text: str) -> tuple[int, ...]:
    """`--looks 8,16,32` as rising seed counts; argparse turns the error into one usage line."""
    from xablate.design import check_looks

    try:
        return check_looks([int(k) for k in text.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: rising whole seed counts of at least 2, e.g. 8,16,32") from None


def parse_where(items: Sequence[str]) -> dict[str, list[Any]]:
    selection: dict[str, list[Any]] = {}
    for item in items:
        axis, sep, value = item.partition("=")
        axis = axis.strip()
        if not sep:
            raise UsageError(f"--where {item}: expected AXIS=VALUE; axes: {', '.join(WHERE_AXES)}")
        if axis not in WHERE_AXES:
            raise UsageError(f"--where {item}: unknown axis {axis!r}; allowed: {', '.join(WHERE_AXES)}")
        try:
            parsed = parse_value(axis, value)
        except ValueError:
            raise UsageError(f"--where {item}: {value!r} is not a value of {axis}; allowed: {allowed(axis)}") from None
        values = selection.setdefault(axis, [])
        if parsed not in values:
            values.append(parsed)
    return selection


def check_args(args: argparse.Namespace) -> tuple[list[Path], dict[str, list[Any]], Path]:
    if not args.paths and not args.wandb:
        raise UsageError("give a PATH holding runs, or --wandb ENTITY/PROJECT")
    for path in args.paths:
        if not path.exists():
            raise UsageError(f"PATH {path} does not exist; allowed: a folder holding run folders")
        if not path.is_dir():
            raise UsageError(f"PATH {path} is not a folder; allowed: a folder holding run folders")
    if args.group and not args.wandb:
        raise UsageError("--group selects W&B runs: it needs --wandb ENTITY/PROJECT")
    if args.wandb is not None:
        parts = args.wandb.split("/")
        if len(parts) != 2 or not all(parts):
            raise UsageError(f"--wandb {args.wandb}: expected ENTITY/PROJECT")
    for flag in ("margin", "plan"):
        value = getattr(args, flag)
        if value is not None and not (value > 0 and value < 100):
            raise UsageError(f"--{flag} {value:g}: allowed: a number of accuracy points in (0, 100)")
    selection = parse_where(args.where)
    if args.out is not None:
        out = args.out
    elif args.paths:
        out = args.paths[0] / "analysis"
        if selection:  # one folder per selection, so that selecting other runs never replaces these figures
            out = out / "+".join(f"{a}={','.join(text(v) for v in vs)}" for a, vs in selection.items())
    else:
        out = Path("analysis-" + "-".join([*args.wandb.split("/"), *([args.group] if args.group else [])]))
    return list(args.paths), selection, out


def warn_left_out(problems: Sequence[Any]) -> None:
    """Every run left out, in one warning."""
    if not problems:
        return
    lines = [f"analysis: warning: {len(problems)} run(s) left out:"]
    lines += [f"  {p.path}: {p.reason}" for p in problems]
    print("\n".join(lines), file=sys.stderr)


def select(data: Runs, selection: dict[str, list[Any]], where: str) -> Runs:
    """The runs `selection` keeps; one line and exit status 2 when there are none."""
    if not len(data):
        fail(f"no completed runs found in {where} (a run folder holds summary.json and metrics.csv)")
    selected = data.where(selection)
    if not len(selected):
        present = "; ".join(
            f"{axis}: {', '.join(text(v) for v in sorted(set(data.runs[axis].map(text))))}" for axis in selection
        )
        flags = " ".join(f"--where {a}={'|'.join(text(v) for v in vs)}" for a, vs in selection.items())
        fail(f"{flags} matches none of the {len(data)} runs; values present: {present}")
    return selected


def analyse(
    args: argparse.Namespace, selected: Runs, paths: list[Path], selection: dict[str, list[Any]], out: Path
) -> Report:
    """`run_analysis` as the flags ask; a study design it cannot follow (a malformed `design.baseline`) is one
    line and exit status 2, raised before any file is written."""
    from xablate.errors import ConfigError

    from .pilot import held_out_only
    from .report import run_analysis

    entity, project = args.wandb.split("/") if args.wandb else (None, None)
    try:
        if args.pilot:
            selected = held_out_only(selected)
        return run_analysis(
            selected,
            out,
            selection=selection,
            sources=[str(p) for p in paths] + ([f"wandb:{args.wandb}"] if args.wandb else []),
            wandb_mode=args.wandb_mode,
            project=project,
            entity=entity,
            group=args.group,
            model="paired" if args.paired else "pooled" if args.pooled else None,
            margin=args.margin,
            looks=args.looks,
            plan=args.plan,
            pilot=args.tolerance if args.pilot else None,
        )
    except ConfigError as error:
        fail(error)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        paths, selection, out = check_args(args)
        from .output import OutputError, check_out

        try:
            check_out(out)
        except OutputError as error:
            raise UsageError(str(error)) from None
    except UsageError as error:
        fail(error)

    from .frames import combine
    from .load import load_local
    from .wandb_source import WandbUnavailable, load_wandb

    parts = []
    if paths:
        parts.append(load_local(paths, exclude=[out], budgets=args.pilot))
    if args.wandb:
        try:
            parts.append(load_wandb(args.wandb, args.group))
        except WandbUnavailable as error:
            print(f"analysis: error: {error}", file=sys.stderr)
            return 1
    data = parts[0] if len(parts) == 1 else combine(parts)
    warn_left_out(data.problems)
    where = (" ".join(str(p) for p in paths) + (f" W&B {args.wandb}" if args.wandb else "")).strip()
    selected = select(data, selection, where)
    print(
        f"analysis: {len(selected)} run(s) from {where}" + (f", {len(data.problems)} left out" if data.problems else "")
    )
    report = analyse(args, selected, paths, selection, out)
    print("\n".join(report.lines))
    if report.published is not None and report.published.warning:
        print(f"analysis: warning: {report.published.warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
