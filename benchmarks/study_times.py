"""Where a study's time went, from its runs' own `summary.json` files, printed as Markdown for BENCHMARKS.md.

Per study folder: the runs trained there and those copied from another study (`reused_from`), and the sum of
the trained runs' wall times (start-up excluded, evaluations included; runs side by side under joblib count
each). Per cell (a run's name without the seed): the threads its runs trained with (`basic` launcher: every
core; `joblib`: cores // n_jobs) and their training images/s, as the median over runs of each run's average
(`train_img_per_s`) and as the median over all their 50-step logging intervals (`metrics.csv`), which a few
minutes of another process on the machine barely move.

Usage: python benchmarks/study_times.py runs/fig9 runs/fig10 runs/fig11
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from collections import defaultdict
from pathlib import Path

SPECTRUM = [str(2**i) for i in range(12)] + ["depthwise"]


def interval_speeds(run_dir: Path) -> list[float]:
    with (run_dir / "metrics.csv").open() as fh:
        return [float(row["img_per_s"]) for row in csv.DictReader(fh) if row["split"] == "train"]


def completed(study: Path) -> list[dict]:
    summaries = [{**json.loads(p.read_text()), "dir": p.parent} for p in sorted(study.glob("*/summary.json"))]
    return [s for s in summaries if s.get("status") == "completed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", type=Path)
    args = parser.parse_args()
    print("| study | runs trained | runs reused | sum of the trained runs' wall times (min) |")
    print("|---|---|---|---|")
    speeds: dict[tuple[str, int], list[float]] = defaultdict(list)
    minutes: dict[tuple[str, int], list[float]] = defaultdict(list)
    intervals: dict[tuple[str, int], list[float]] = defaultdict(list)
    order: list[tuple[str, int]] = []
    for study in args.studies:
        cells = completed(study)
        trained = [s for s in cells if "reused_from" not in s]
        total = sum(s["wall_s"] for s in trained) / 60
        print(f"| {study.name} | {len(trained)} | {len(cells) - len(trained)} | {total:.1f} |")
        for s in sorted(trained, key=lambda s: (SPECTRUM.index(str(s["segments"])), s["name"])):
            key = (s["name"].rsplit("-s", 1)[0], s["threads"])
            order += [] if key in order else [key]
            speeds[key].append(s["train_img_per_s"])
            minutes[key].append(s["wall_s"] / 60)
            intervals[key] += interval_speeds(s["dir"])
    print("\n| cell | threads per run | runs | train img/s (runs) | train img/s (intervals) | run wall time (min) |")
    print("|---|---|---|---|---|---|")
    for name, threads in order:
        values = speeds[(name, threads)]
        wall = statistics.median(minutes[(name, threads)])
        steady = statistics.median(intervals[(name, threads)])
        print(f"| {name} | {threads} | {len(values)} | {statistics.median(values):,.0f} | {steady:,.0f} | {wall:.1f} |")


if __name__ == "__main__":
    main()
