"""A job's share of the machine when a sweep launcher runs jobs side by side: its CPU threads and its GPU."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch


def thread_share(n_jobs: int, cores: int) -> int:
    """Intra-op threads per job when `n_jobs` jobs run side by side on `cores` cores (joblib's n_jobs < 0
    means one job per core): an even split, at least one each, so that jobs never oversubscribe the cores."""
    return max(1, cores // (cores if n_jobs < 0 else min(n_jobs, cores)))


def gpu_for_job(job_num: int, n_jobs: int | None, gpu_count: int) -> int | None:
    """The GPU index of job `job_num` of a sweep: round-robin (job N takes GPU N mod count) when jobs run
    side by side (`n_jobs` set) on a machine with several GPUs, so K jobs on G < K GPUs share each GPU
    K / G ways; None (the device as configured) for sequential sweeps or at most one GPU."""
    if n_jobs is None or gpu_count < 2:
        return None
    return job_num % gpu_count


def launcher_threads(launcher: Mapping[str, Any] | None = None) -> int | None:
    """The intra-op thread share of one job under the sweep's launcher (`launcher`, by default the running
    job's), when it runs jobs side by side: `cpus_per_task` (submitit) or cores // n_jobs (joblib). None for
    sequential launching."""
    from hydra.core.hydra_config import HydraConfig

    if launcher is None:
        if not HydraConfig.initialized():
            return None
        launcher = HydraConfig.get().launcher
    if launcher.get("cpus_per_task"):
        return int(launcher.cpus_per_task)
    n_jobs = launcher.get("n_jobs")
    if n_jobs is None:
        return None
    return thread_share(n_jobs, os.cpu_count() or 1)


def job_gpu(device: torch.device) -> torch.device:
    """The CUDA device of this job of a parallel sweep (`gpu_for_job`); other devices are left alone."""
    from hydra.core.hydra_config import HydraConfig

    if device.type != "cuda" or device.index is not None or not HydraConfig.initialized():
        return device
    config = HydraConfig.get()
    index = gpu_for_job(config.job.num, config.launcher.get("n_jobs"), torch.cuda.device_count())
    return device if index is None else torch.device("cuda", index)
