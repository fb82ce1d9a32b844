"""Figures 9 and 10 of the Xception paper, the project's Figure 11 (the segments spectrum) and summary tables,
from xablate's run folders or W&B runs: `python -m analysis PATH...`.

Modules: `load` (runs into frames, from run folders, published frames or W&B), `stats` (intervals and tests,
on scipy.stats), `plan` (which figures the runs support), `compare` (each figure family's comparisons and
verdicts), `power` (`--plan`: seeds needed), `verdicts` (the comparison files), `figures`, `tables`,
`publish` (the W&B analysis run), `report` (the output folder). Nothing is imported here,
so `import analysis` stays cheap.
"""
