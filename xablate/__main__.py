"""`xablate` (the console command) and `python -m xablate`: the Hydra application over `run(cfg)`.

The task function returns the cell's objective (`objective`, `val_top1` by default), so Hydra's search
sweepers (`hydra/sweeper=optuna`) can optimise it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from typing import Any

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "17179869184", "MALLOC_TRIM_THRESHOLD_": "17179869184"}
"""glibc otherwise returns and re-maps PyTorch's large CPU buffers every step (+14%, BENCHMARKS.md)."""


def _reexec_with_malloc_env() -> None:
    """Restart once with `MALLOC_ENV`: glibc reads it only at process start, so do it before torch loads.

    The same command line runs again (`sys.orig_argv`: interpreter options, `-m xablate` or the console
    script's path), so Hydra sees the same program name, which its shell completion is installed for."""
    if sys.platform != "linux" or any(key in os.environ for key in MALLOC_ENV):
        return
    os.environ.update(MALLOC_ENV)
    with contextlib.suppress(OSError):
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def _started_as_command() -> bool:
    """`python -m xablate`, or the `xablate` console script, which imports this module to call `main`."""
    return __name__ == "__main__" or os.path.basename(sys.argv[0]) == "xablate"


if _started_as_command():
    _reexec_with_malloc_env()

import warnings  # noqa: E402

# conf/hydra/launcher/*.yaml replace the launcher plugins' configs under the same names, which Hydra
# validates against the plugins' schemas (wanted) while warning that this matching is deprecated.
warnings.filterwarnings("ignore", message=r"(?s).*validated against ConfigStore schema with the same name")
if "PYTHONWARNINGS" not in os.environ:  # joblib's worker processes repeat it before importing xablate
    os.environ["PYTHONWARNINGS"] = "ignore::UserWarning:multiprocessing.process"

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from .cell.lifecycle import exit_code, record_failure, run  # noqa: E402
from .errors import ConfigError, WriteError  # noqa: E402
from .spec.record import objective_value  # noqa: E402
from .spec.resolvers import register_resolvers  # noqa: E402
from .spec.schema import register_configs  # noqa: E402
from .sweep.check import CONF_DIR, Command, check_command  # noqa: E402
from .sweep.estimate import Context, Estimate, estimate, process_age_s, summary_lines  # noqa: E402
from .sweep.progress import SweepProgress  # noqa: E402
from .sweep.report import announce, finish  # noqa: E402
from .sweep.slots import BASIC, SLURM, launcher_kind  # noqa: E402
from .sweep.status import status_view  # noqa: E402

UNTRAINED_EXIT = {"dry_run": 0, "running": 1}
"""Exit status of a job that trained nothing: a dry run succeeds; a cell locked by a live process did not run."""


def _fail(err: ConfigError) -> None:
    print(f"xablate: error: {err}", file=sys.stderr)
    sys.exit(2)


def _first_write_error(err: WriteError) -> WriteError:
    """The write that failed first: on a full disk, writing the summary after a failed checkpoint fails too."""
    while isinstance(err.__context__, WriteError):
        err = err.__context__
    return err


_SWEEP: SweepProgress | None = None
"""Set by `main` when a sweep's cells run in this process (Hydra's basic launcher): the line after each cell."""


def _job(cfg: DictConfig, multirun: bool) -> dict[str, Any] | None:
    """Run one cell; its summary, or None when it stopped on an unexpected error (multirun only)."""
    try:
        return run(cfg)
    except ConfigError as err:
        if not multirun:
            _fail(err)
        summary = record_failure(cfg, f"{err}")
        print(f"xablate: error: {err}", file=sys.stderr)
        return summary
    except WriteError as err:
        print(f"xablate: error: {_first_write_error(err)}; make room and run again to resume", file=sys.stderr)
        if not multirun:
            sys.exit(1)
        return None
    except Exception:
        if not multirun:
            raise
        traceback.print_exc()
        return None


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")  # absolute: also as a console script
def _hydra_main(cfg: DictConfig) -> float | None:
    """One job; returns its objective (None when the cell has none: failed, or a dry run). In a multirun a
    failing cell records its failure and lets the sweep go on; a signal (Ctrl-C, SIGTERM, a cluster's
    pre-emption notice) stops the whole command after checkpointing."""
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    summary = _job(cfg, multirun)
    status = "failed" if summary is None else summary["status"]
    if _SWEEP is not None and (line := _SWEEP.cell_done(cfg, status)) is not None:
        print(line, flush=True)
    if summary is None:
        return None
    code = UNTRAINED_EXIT[status] if status in UNTRAINED_EXIT else exit_code(summary)
    if code and (not multirun or status == "interrupted"):
        sys.exit(code)
    return objective_value(summary, str(cfg.objective))


def _plan(command: Command, context: Context, command_s: float) -> Estimate | None:
    """The command's time estimate: for a dry run, measuring what the cache lacks; for a sweep, too, when
    its cells run on this machine (a SLURM sweep only reads the cache). None for a search or a single run."""
    cells = command.cells
    if not cells or command.search or not (command.multirun or cells[0].dry_run):
        return None
    local = launcher_kind(OmegaConf.select(cells[0], "hydra.launcher")) != SLURM
    return estimate(cells, context, command_s, multirun=command.multirun, measure=cells[0].dry_run or local)


def main() -> None:
    """The console command `xablate` (and `python -m xablate`): check every cell, then let Hydra run them."""
    global _SWEEP
    started, process_s = time.perf_counter(), process_age_s()
    register_configs()
    register_resolvers()
    try:
        command = check_command(sys.argv[1:])
    except ConfigError as err:
        _fail(err)
    cells = command.cells
    context = Context(process_s, (time.perf_counter() - started) / max(1, len(cells)))
    if cells and cells[0].status:
        print(status_view(cells, context), flush=True)
        sys.exit(0)
    plan = _plan(command, context, process_s + time.perf_counter() - started)
    if command.search:
        print(f"search: {command.search}; the search space and its first trials are valid", flush=True)
    elif command.multirun:
        print(announce(cells), flush=True)
        if plan is not None and not cells[0].dry_run:
            print(summary_lines(plan)[0], flush=True)
            if launcher_kind(OmegaConf.select(cells[0], "hydra.launcher")) == BASIC:
                _SWEEP = SweepProgress(cells, plan)
    _hydra_main()
    if command.multirun and cells and not command.search:
        sys.exit(1 if finish(cells, plan, process_s + time.perf_counter() - started) else 0)
    if plan is not None:
        print("\n".join(summary_lines(plan)), flush=True)


if __name__ == "__main__":
    main()
