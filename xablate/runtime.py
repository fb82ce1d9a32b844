"""Where and how a run computes: device, threads, precision, memory format, and the allocator."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from .errors import ConfigError


def select_device(name: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; an explicit device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available[name]:
        found = ", ".join(k for k, v in available.items() if v)
        raise ConfigError(f"trainer.device={name!r} is not available on this machine; available: {found}")
    return torch.device(name)


@functools.cache
def cpu_model() -> str:
    """The CPU's model name as Linux reports it in /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device) -> str:
    """What computes a run's numbers: the GPU's name, or the CPU's model and the vector instructions
    PyTorch's kernels use on it. The kernels differ between CPU kinds, so the same cell, seed and thread
    count trained on another kind of CPU is another sample (BENCHMARKS.md measured 0.3 points of test
    top-1 between an AVX2 and an AVX-512 machine)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()})"


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


def execution_setting(cfg: Any, launcher: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Where and how a cell computes, as its `summary.json` records it: the same cell trained on another
    device or kind of CPU, or with another thread count, precision, torch release or backward route, can end
    up to half a point apart (float reduction order), as much as a seed, so a study holds these fixed and
    reuses only a cell trained the same way."""
    device = select_device(cfg.trainer.device)
    return {
        "device": device.type,
        "hardware": hardware(device),
        "threads": cfg.trainer.threads or launcher_threads(launcher) or torch.get_num_threads(),
        "precision": str(cfg.trainer.precision),
        "torch": torch.__version__,
        "fast_backward": bool(cfg.trainer.fast_backward),
    }


SETTING_PHRASES: dict[str, str] = {
    "device": "on {}", "hardware": "on {}", "threads": "with {} threads", "precision": "at precision {}",
    "torch": "with torch {}", "fast_backward": "with trainer.fast_backward={}",
}  # fmt: skip
SETTING_BEFORE_RECORDED: dict[str, Any] = {"fast_backward": False}
"""What runs made before a setting was recorded in summary.json used (the library's backward)."""


def setting_mismatch(there: Mapping[str, Any], here: Mapping[str, Any]) -> str | None:
    """Why a run with setting `there` is not this one's twin (None when it is)."""
    there = {**SETTING_BEFORE_RECORDED, **{k: v for k, v in there.items() if v is not None}}
    for key, value in here.items():
        if there.get(key) != value:
            was = "(not recorded)" if there.get(key) is None else there[key]
            return f"trained {SETTING_PHRASES[key].format(was)} there, {value} here"
    return None


def job_gpu(device: torch.device) -> torch.device:
    """The CUDA device of this job of a parallel sweep (`gpu_for_job`); other devices are left alone."""
    from hydra.core.hydra_config import HydraConfig

    if device.type != "cuda" or device.index is not None or not HydraConfig.initialized():
        return device
    config = HydraConfig.get()
    index = gpu_for_job(config.job.num, config.launcher.get("n_jobs"), torch.cuda.device_count())
    return device if index is None else torch.device("cuda", index)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def deterministic(device: torch.device, enabled: bool) -> None:
    """On CUDA, pick deterministic cuDNN and cuBLAS algorithms and warn, naming it, about any op that has no
    deterministic kernel, so that the same config and seed give the same numbers. The CPU kernels used
    here are deterministic for a given thread count already; this leaves them alone."""
    if device.type != "cuda":
        return
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False


def check_precision(device: torch.device, precision: str) -> None:
    if precision == "16-mixed" and device.type == "cpu":
        raise ConfigError("trainer.precision='16-mixed' needs a GPU; on CPU use 32 or bf16")


@contextlib.contextmanager
def threads(count: int | None) -> Iterator[None]:
    """Run with `count` intra-op threads (None keeps PyTorch's default), restored afterwards."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
