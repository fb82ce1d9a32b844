"""A Hydra launcher that launches nothing: it records the jobs a sweeper asks for.

xablate's pre-launch check (`xablate/sweep/check.py`) configures it as `hydra.launcher` and lets the command's
own sweeper run, so the cells come from that sweeper's public `sweep` method, whatever the sweeper. Hydra
instantiates plugins only from the `hydra_plugins` package, hence this home.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig


class EnoughJobs(Exception):
    """Raised by the launcher to end a search sweeper's sweep after its first batch."""


def is_enough_jobs(error: BaseException) -> bool:
    """Whether `error` is an `EnoughJobs`, also one of the copy of this module that Hydra loads itself."""
    return type(error).__module__ == __name__ and type(error).__qualname__ == EnoughJobs.__qualname__


class RecordingLauncher(Launcher):
    """A launcher that hands each job's override list to the task function instead of running the job; what
    the task function returns is the job's return value.
    With `first_batch_only`, the second `launch` raises `EnoughJobs`.

    Hydra loads plugin modules on its own, apart from a plain import, so the task function, not this class,
    is where the caller collects the jobs."""

    def __init__(self, first_batch_only: bool = False) -> None:
        self.first_batch_only = first_batch_only
        self.launched = 0
        self.task_function: Callable[[list[str]], Any] | None = None

    def setup(self, *, hydra_context: Any, task_function: Callable[[list[str]], Any], config: DictConfig) -> None:
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.task_function is not None
        if self.first_batch_only and self.launched:
            raise EnoughJobs
        self.launched += 1
        return [
            JobReturn(overrides=list(job), status=JobStatus.COMPLETED, _return_value=self.task_function(list(job)))
            for job in job_overrides
        ]
