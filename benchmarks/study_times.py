"""Where a study's time went, from its cells' own `summary.json` files, printed as Markdown for BENCHMARKS.md.

Per study folder: the cells trained there and those copied from another study (`reused_from`), the sum of
the trained cells' wall times (start-up excluded, evaluations included), and per cell (its name without the
seed) the median training images/s and the thread count its runs trained with (`basic` launcher: all cores per cell;
`joblib`: cores // n_jobs per cell).

Usage: python benchmarks/study_times.py runs/fig9 runs/fig10 runs/fig11
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

SPECTRUM = [str(2**i) for i in range(12)] + ["depthwise"]


def completed(study: Path) -> list[dict]:
    summaries = [json.loads(p.read_text()) for p in sorted(study.glob("*/summary.json"))]
    return [s for s in summaries if s.get("status") == "completed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", type=Path)
    args = parser.parse_args()
    print("| study | cells trained | cells reused | trained cells' wall time (min) |")
    print("|---|---|---|---|")
    speeds: dict[tuple[str, int], list[float]] = defaultdict(list)
    minutes: dict[tuple[str, int], list[float]] = defaultdict(list)
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
    print("\n| cell | threads per run | runs | median train img/s | median run wall time (min) |")
    print("|---|---|---|---|---|")
    for name, threads in order:
        values = speeds[(name, threads)]
        wall = statistics.median(minutes[(name, threads)])
        print(f"| {name} | {threads} | {len(values)} | {statistics.median(values):,.0f} | {wall:.1f} |")


if __name__ == "__main__":
    main()
