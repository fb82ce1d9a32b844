"""`python -m xablate`: the Hydra application over `run(cfg)`."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "17179869184", "MALLOC_TRIM_THRESHOLD_": "17179869184"}
"""glibc otherwise returns and re-maps PyTorch's large CPU buffers every step (PERF-NOTES: +10-40%)."""


def _reexec_with_malloc_env() -> None:
    """Restart once with `MALLOC_ENV`: glibc reads it only at process start, so do it before torch loads."""
    if sys.platform != "linux" or any(key in os.environ for key in MALLOC_ENV):
        return
    os.environ.update(MALLOC_ENV)
    with contextlib.suppress(OSError):
        os.execv(sys.executable, [sys.executable, "-m", "xablate", *sys.argv[1:]])


if __name__ == "__main__":
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
from omegaconf import DictConfig  # noqa: E402

from .config import register_configs  # noqa: E402
from .errors import ConfigError, WriteError  # noqa: E402
from .identity import register_resolvers  # noqa: E402
from .lifecycle import exit_code, record_failure, run  # noqa: E402
from .preflight import check_command  # noqa: E402
from .sweep import announce, finish  # noqa: E402

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


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    """One job. In a multirun a failing cell records its failure and lets the sweep go on; a signal
    (Ctrl-C, SIGTERM, a cluster's pre-emption notice) stops the whole command after checkpointing."""
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        summary = run(cfg)
    except ConfigError as err:
        if not multirun:
            _fail(err)
        summary = record_failure(cfg, f"{err}")
        print(f"xablate: error: {err}", file=sys.stderr)
    except WriteError as err:
        print(f"xablate: error: {_first_write_error(err)}; make room and run again to resume", file=sys.stderr)
        if not multirun:
            sys.exit(1)
        return
    except Exception:
        if not multirun:
            raise
        traceback.print_exc()
        return
    status = summary["status"]
    code = UNTRAINED_EXIT[status] if status in UNTRAINED_EXIT else exit_code(summary)
    if code and (not multirun or status == "interrupted"):
        sys.exit(code)


def main() -> None:
    register_configs()
    register_resolvers()
    try:
        cells, multirun = check_command(sys.argv[1:])
    except ConfigError as err:
        _fail(err)
    if multirun:
        print(announce(cells), flush=True)
    _hydra_main()
    if multirun and cells:
        sys.exit(1 if finish(cells) else 0)


if __name__ == "__main__":
    main()
