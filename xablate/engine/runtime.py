"""Where and how a run computes: device, hardware, threads, precision, memory format and determinism.

What a job's share of the machine is under a sweep launcher is `jobs.py`'s; the allocator's settings are
made in `xablate/__main__.py`, before torch is imported."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from .jobs import launcher_threads


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


def execution_setting(cfg: Any, launcher: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Where and how a cell computes, as its `summary.json` records it: the same cell trained on another
    device or kind of CPU, or with another thread count, precision, torch release, backward route or stack
    (seeds folded into one model), can end
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
        "stack": int(cfg.trainer.stack),
    }


def memory_format_of(channels_last: bool) -> torch.memory_format:
    """The training's memory format: channels_last (NHWC, faster on CPU for every segments value) or NCHW."""
    return torch.channels_last if channels_last else torch.contiguous_format


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
