"""The analysis as a W&B run: Figures 9-11 and the summary table, in the study's group, job type `analysis`.

Offline by default, inside the analysis' output folder (`<out>/wandb/offline-run-*`, uploaded later with
`wandb sync`); `online` falls back to offline with one warning when there is no API key or no server. It
starts the way a training run does (`xablate.wandb_run`, which imports no torch). The files on disk are the
result: any W&B failure is one warning, never a failed analysis.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from xablate.wandb_run import NO_API_KEY, reason, start_run, teardown

from .axes import AXES, text

MODES: tuple[str, ...] = ("offline", "online", "disabled")


@dataclass(frozen=True)
class Published:
    mode: str  # where the run went: offline, online or disabled (also when W&B failed)
    run_dir: Path | None = None
    warning: str | None = None

    @property
    def sync_command(self) -> str | None:
        return f"wandb sync {self.run_dir}" if self.mode == "offline" and self.run_dir else None


def wandb_table(table: pd.DataFrame) -> pd.DataFrame:
    """The summary table with one type per column (W&B tables reject `4` and `"depthwise"` in one column)."""
    out = table.copy()
    for column in (*AXES, "baseline", "seeds"):
        if column in out:
            out[column] = out[column].map(text).astype(str)
    for column in ("params", "macs"):
        if column in out:
            out[column] = out[column].astype("float64")
    return out


def _artifact(wandb_module: Any, group: str, files: Sequence[Path], read_runs: Sequence[str]) -> Any:
    """The analysis' figures and tables as one artifact (its name: W&B allows letters, digits, `-_.`)."""
    name = "analysis-" + re.sub(r"[^\w.-]", "_", group)
    artifact = wandb_module.Artifact(name, type="analysis", metadata={"wandb_runs": list(read_runs)})
    for path in files:
        artifact.add_file(str(path), name=path.name)
    return artifact


def _log(
    wandb_module: Any, run: Any, figures: Mapping[str, Path], attachments: Sequence[Path], table: pd.DataFrame
) -> None:
    """The figures as images and the table as a W&B table, in one history row; the attachments as the run's
    files."""
    logged: dict[str, Any] = {name: wandb_module.Image(str(png), caption=name) for name, png in figures.items()}
    logged["summary_table"] = wandb_module.Table(dataframe=wandb_table(table))
    run.log(logged)
    files = Path(run.dir)
    for path in attachments:
        shutil.copy2(path, files / path.name)
        run.save(str(files / path.name), base_path=str(files), policy="end")


def publish(
    out: Path,
    figures: Mapping[str, Path],
    attachments: Sequence[Path],
    table: pd.DataFrame,
    *,
    mode: str,
    project: str,
    entity: str | None,
    group: str,
    config: Mapping[str, Any],
    read_runs: Sequence[str] = (),
) -> Published:
    """Log `figures` (name -> PNG) as images, `table` as a W&B table, and copy `attachments` (PDFs, tables)
    into the run's files, in one W&B run of job type `analysis` under `out/wandb/`; the figures and
    attachments are also its artifact `analysis-<group>` (type `analysis`), and the ids of the W&B runs
    whose results it read (`read_runs`) are in its config and summary as `wandb_runs`."""
    if mode == "disabled":
        return Published("disabled")
    warning = None
    try:
        import wandb

        kwargs: dict[str, Any] = dict(
            project=project,
            entity=entity,
            group=group,
            job_type="analysis",
            name=f"analysis-{group}",
            config={**config, "wandb_runs": list(read_runs)},
            tags=["analysis"],
            dir=str(out),
        )
        run, fallback = start_run(wandb, mode, **kwargs)
        if fallback == NO_API_KEY:
            warning = "W&B online: no API key (run `wandb login` or set WANDB_API_KEY); logged offline"
        elif fallback is not None:
            warning = f"W&B online failed ({fallback}); logged offline"
        run_dir = Path(run.settings.sync_dir)
        final_mode = "offline" if run.offline else "online"
        try:
            _log(wandb, run, figures, attachments, table)
            run.log_artifact(_artifact(wandb, group, [*figures.values(), *attachments], read_runs))
            run.summary.update(
                {"n_runs": int(config.get("n_runs", 0)), "n_cells": len(table), "wandb_runs": list(read_runs)}
            )
            run.finish(exit_code=0)
        except Exception:
            run.finish(exit_code=1)
            raise
        finally:
            teardown(wandb)
        return Published(final_mode, run_dir, warning)
    except Exception as error:
        return Published("disabled", None, f"W&B logging failed ({reason(error)}); the files in {out} are complete")
