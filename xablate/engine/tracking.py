"""Weights & Biases tracking: one W&B run per cell, offline by default, never in training's way. (Over
250 lines because the tracker's docstring states its W&B contract: ids, resume, steps, failures.)

The run's own files (`summary.json`, the resolved config, checkpoints) are the source of truth; W&B is a
mirror for browsing and plotting. So every W&B failure here (no network, no API key, an internal error)
turns into one warning and, at worst, an untracked run: training never stops or waits for W&B.

wandb 0.31 writes an offline run as a single transaction log, `out_dir/wandb/offline-run-<time>-<key>/
run-<key>.wandb`, which `wandb sync` uploads later; unlike older releases it does not write `files/config.yaml`
or `files/wandb-summary.json` offline (wandb-core writes those only while syncing).
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ..axes import NAMES, text
from ..spec.cell import Cell, plain_values
from ..wandb_run import reason, start_run, teardown

if TYPE_CHECKING:
    import wandb

logger = logging.getLogger(__name__)

TAG_AXES: tuple[str, ...] = ("model", "data", *NAMES, "seed")


INTERNAL_KNOBS: frozenset[str] = frozenset({"hydra", "dry_run", "status", "rerun", "reuse", "out_dir", "logger"})
"""Top-level keys left out of the W&B config: how a command runs, not what the run is."""


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The W&B config: the ablation and training values as plain Python values, without `INTERNAL_KNOBS`,
    and under `hydra` the config-group choices and the command line's overrides of the job (not the rest of
    the `hydra` node: its paths interpolate the run key from this very config)."""
    container = plain_values(cfg, INTERNAL_KNOBS)
    hydra = cfg.hydra if "hydra" in cfg else HydraConfig.get() if HydraConfig.initialized() else None
    if hydra is not None:
        container["hydra"] = {
            "choices": OmegaConf.to_container(hydra.runtime.choices, resolve=True),
            "overrides": list(hydra.overrides.task),
        }
    return container


def run_tags(cell: Cell, studies: tuple[str, ...] | None = None) -> list[str]:
    """`axis=value` tags, such as `segments=4` or `residual=true`, to filter and group runs in the W&B UI, and
    `study:<name>` for each study the run belongs to (by default the cell's; a reused cell is in several)."""
    values = cell.record()
    axes = [f"{axis}={text(values[axis])}" for axis in TAG_AXES]
    return [*axes, *(f"study:{study}" for study in (studies or (cell.study,)))]


STEP_METRIC = "trainer/step"


def _define_step_metric(run: Any) -> None:
    run.define_metric(STEP_METRIC)
    for pattern in ("train/*", "val/*", "test/*"):
        run.define_metric(pattern, step_metric=STEP_METRIC)


class Tracker:
    """One W&B run for one cell.

    `mode` comes from `cfg.logger.mode`: `offline` (the default) writes the run under `out_dir/wandb/`;
    `online` uploads as it goes and falls back to offline, with one warning, when there is no API key or the
    server cannot be reached within `wandb_run.ONLINE_INIT_TIMEOUT_S`; `disabled` never imports wandb and makes every
    method a no-op. The run's id is `<run key>-<attempt>`: a cell resumed from its checkpoint continues the same
    W&B run (`resume="allow"`; offline, W&B ignores `resume`: each process writes its own folder under the same
    id, and `wandb sync` given them all uploads them in start order), while `rerun=true` starts the next attempt
    as a run of its own, leaving the earlier one as it was. Its group is the study, its tags the axes and
    `study:<name>`.

    With `retag` (the W&B id and group of a run trained in another study), the tracker only updates that run's
    tags to `studies`, without touching its config or history: a reused cell's run lists every study it is in.

    The x-axis is the number of gradient steps, twice over: it is W&B's own step (`run.log(metrics, step=step)`),
    so `val/*` values logged at an evaluation step share the history row of the `train/*` values of that step,
    and it is logged as `trainer/step`, which `define_metric` declares the step metric of `train/*` and `val/*`,
    so the dashboard's charts use it as their x-axis by default. W&B needs that step never to decrease; a step
    below the last one (or below the resumed run's last step) is dropped with one warning.

    Usable as a context manager; leaving the block through an exception finishes the run with exit code 1, so it
    shows as failed, and the exception propagates.
    """

    def __init__(
        self,
        cfg: DictConfig,
        cell: Cell,
        out_dir: Path,
        *,
        job_type: str = "train",
        attempt: int = 1,
        retag: tuple[str, str] | None = None,
        studies: tuple[str, ...] | None = None,
    ) -> None:
        self._run: wandb.Run | None = None
        self._broken = False  # a W&B call failed: no more calls but finish
        self._run_dir: Path | None = None
        self._run_id: str | None = None
        self._mode = "disabled"
        self._min_step = 0
        self._warned_step = False
        self._log_model = bool(cfg.logger.get("log_model", False))
        requested = str(cfg.logger.mode)
        if requested == "disabled":
            return
        out_dir = Path(out_dir)
        try:
            import wandb

            out_dir.mkdir(parents=True, exist_ok=True)  # else wandb quietly writes to a temporary folder
            kwargs: dict[str, Any] = dict(
                project=cfg.logger.project,
                entity=cfg.logger.entity,
                config=resolved_config(cfg),
                group=cell.study,
                job_type=job_type,
                name=cell.name,
                id=f"{cell.key}-{attempt}",
                tags=run_tags(cell, studies),
                dir=str(out_dir),
                resume="allow",
            )
            if retag is not None:
                kwargs["id"], kwargs["group"] = retag
                del kwargs["config"]
            self._run, fallback = start_run(wandb, requested, **kwargs)
        except Exception as error:
            logger.warning("W&B could not start (%s): this run is not tracked in W&B", reason(error))
            self._run = None
            return
        run = self._run
        self._run_id = str(run.id)
        self._call("define_metric", _define_step_metric)
        self._mode = "disabled" if run.disabled else "offline" if run.offline else "online"
        self._run_dir = Path(run.settings.sync_dir)
        self._min_step = run.starting_step
        if fallback is not None:
            logger.warning(
                "W&B online failed (%s): logging offline; upload later with `%s`", fallback, self.sync_command
            )

    @property
    def mode(self) -> str:
        """Where the run went: `online`, `offline` (also after a fallback) or `disabled` (also when W&B failed to
        start); after a W&B error mid-run the mode stays, and what was logged until then stays on disk."""
        return self._mode

    @property
    def run_id(self) -> str | None:
        """The W&B run id, `<run key>-<attempt>`; None when no W&B run started."""
        return self._run_id

    @property
    def run_dir(self) -> Path | None:
        """The W&B run folder, `out_dir/wandb/<offline-run|run>-<time>-<key>`; None when disabled."""
        return self._run_dir

    @property
    def sync_command(self) -> str | None:
        """The command that uploads this offline run, such as `wandb sync runs/.../wandb/offline-run-...`."""
        if self._mode != "offline" or self._run_dir is None:
            return None
        return f"wandb sync {shlex.quote(str(self._run_dir))}"

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Log `metrics` at `step` gradient steps; values logged at the same step share one history row."""
        if self._run is None or self._broken:
            return
        if step < self._min_step:
            if not self._warned_step:
                logger.warning(
                    "W&B steps must not decrease: step %d (after %d) dropped, and any later such step",
                    step,
                    self._min_step,
                )
                self._warned_step = True
            return
        self._min_step = step
        self._call("log", lambda run: run.log({STEP_METRIC: int(step), **metrics}, step=int(step)))

    def set_summary(self, summary: dict[str, Any]) -> None:
        """Copy `summary.json`'s values into the run's summary (the values the W&B runs table shows)."""
        if self._run is None or self._broken:
            return
        self._call("set_summary", lambda run: run.summary.update(dict(summary)))

    def log_model(self, checkpoint: Path, metadata: dict[str, Any]) -> None:
        """Log `checkpoint` as the artifact `model-<run id>` of type `model`, aliased `latest` (the convention of
        Lightning's WandbLogger, whose `log_model=True` does the same at the end of training)."""
        if self._run is None or self._broken or not checkpoint.is_file():
            return

        def action(run: wandb.Run) -> None:
            import wandb

            artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata=metadata)
            artifact.add_file(str(checkpoint), name=checkpoint.name)
            run.log_artifact(artifact, aliases=["latest"])

        self._call("log_model", action)

    def end(self, summary: Mapping[str, Any], checkpoint: Path) -> None:
        """End the run as a trained cell's run ends: with `logger.log_model`, a completed run's `checkpoint` as its
        model artifact; `summary` (summary.json's values) as its summary; finished, as failed unless completed."""
        completed = summary.get("status") == "completed"
        if completed and self._log_model:
            self.log_model(checkpoint, {key: summary.get(key) for key in ("run_key", "steps", "val_top1")})
        self.set_summary(summary)
        self.finish(0 if completed else 1)

    def finish(self, exit_code: int = 0) -> None:
        """Close the run (a non-zero `exit_code` marks it failed); later calls, and `log`, do nothing.

        On return the run's transaction log is complete on disk: `run.finish()` alone returns before wandb-core
        has flushed it, so the W&B service is torn down as well (the next run in this process starts a new one,
        about 0.2 s)."""
        run, self._run = self._run, None
        if run is None:
            return
        try:
            run.finish(exit_code=exit_code)
        except Exception as error:
            if not self._broken:
                logger.warning("W&B finish failed (%s)", reason(error))
        import wandb

        teardown(wandb)
        if self.sync_command is not None:
            logger.info("W&B run saved offline; upload with `%s`", self.sync_command)

    def _call(self, what: str, action: Callable[[wandb.Run], object]) -> None:
        """Run one W&B call; an error in W&B becomes one warning and stops W&B calls until `finish`."""
        assert self._run is not None
        try:
            action(self._run)
        except Exception as error:
            logger.warning("W&B %s failed (%s): W&B tracking is off for the rest of this run", what, reason(error))
            self._broken = True

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish(1 if exc_type is not None else 0)
