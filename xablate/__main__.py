"""`python -m xablate`: the Hydra application over `run(cfg)`."""

from __future__ import annotations

import contextlib
import os
import sys

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

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from .config import register_configs  # noqa: E402
from .errors import ConfigError  # noqa: E402
from .preflight import check_command  # noqa: E402
from .runs import register_resolvers  # noqa: E402


def _fail(err: ConfigError) -> None:
    print(f"xablate: error: {err}", file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    from .run import run
    from .train import exit_code

    try:
        summary = run(cfg)
    except ConfigError as err:
        _fail(err)
    code = 0 if summary["status"] == "dry_run" else exit_code(summary)
    if code:
        sys.exit(code)


def main() -> None:
    register_configs()
    register_resolvers()
    try:
        check_command(sys.argv[1:])
    except ConfigError as err:
        _fail(err)
    _hydra_main()


if __name__ == "__main__":
    main()
