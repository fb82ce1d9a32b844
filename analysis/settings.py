"""Whether a study's runs were all computed the same way.

The same cell and seed ends up to half a point apart on another kind of CPU or GPU, or with another thread
count or precision: as much as a seed, so a comparison between cells trained in different settings measures
the setting as well. Each run records its setting in `summary.json`; this names every setting that varies
within one study, so that the tables and verdicts say so instead of reading it as the cells' difference.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from .axes import text

SETTINGS: tuple[str, ...] = ("device", "hardware", "threads", "precision", "stack")
NOT_RECORDED = "not recorded"


def setting_value(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return NOT_RECORDED
    word = text(value)
    return word[:-2] if word.endswith(".0") and word[:-2].isdigit() else word


def mixed_settings(runs: pd.DataFrame) -> list[str]:
    """One sentence per study and setting with more than one value among its runs, most runs first.

    A setting no run recorded (runs made before it was recorded) is not reported; one recorded by some runs
    only is, since the others may have run elsewhere."""
    sentences = []
    for study, group in runs.groupby(runs["study"].map(text), sort=True):
        for setting in SETTINGS:
            if setting not in group:
                continue
            counts = Counter(setting_value(v) for v in group[setting])
            if len(counts) < 2:
                continue
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            values = ", ".join(f"{value} ({n} runs)" for value, n in ranked)
            sentences.append(
                f"{study}: its runs differ in {setting}: {values}; a difference between cells trained in "
                "different settings includes the setting's"
            )
    return sentences
