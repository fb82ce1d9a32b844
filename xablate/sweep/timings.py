"""Measured step times of a command's architectures, kept in `<out_dir>/.cache/step_times.json`.

A sweep's cells share a few architectures, so each distinct (architecture, batch, image size, optimiser,
precision, memory format, device, hardware, threads, torch) is timed once (`xablate/engine/timing.py`) and
kept; so is the time to load each data config. Another machine, thread count or torch release is another
entry. The file is only a cache: delete it to measure again (on a shared machine the times drift with
its load). The status view reads it and never measures.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..engine.runtime import execution_setting, select_device, threads
from ..engine.timing import StepTimer, StepTimes, time_data, time_together
from ..errors import ConfigError, WriteError
from ..files import write_json_atomic
from ..spec.architecture import model_kwargs
from ..spec.cell import Cell

CACHE = Path(".cache") / "step_times.json"


def setting_of(cfg: DictConfig) -> dict[str, Any]:
    """Where and how the cell computes under its command's launcher (`execution_setting`)."""
    return execution_setting(cfg, OmegaConf.select(cfg, "hydra.launcher"))


def step_key(cfg: DictConfig, setting: Mapping[str, Any]) -> dict[str, Any]:
    """Everything a step's time depends on; two cells with equal keys share one measurement."""
    trainer, data = cfg.trainer, cfg.data
    return {
        "model": model_kwargs(cfg),
        "batch_size": data.batch_size,
        "eval_batch_size": data.eval_batch_size or data.batch_size,
        "image": [data.in_chans, data.image_size],
        "optimizer": cfg.optim.name,
        "polyak": cfg.optim.polyak_decay is not None,
        "channels_last": trainer.channels_last,
        "compile": [trainer.compile, trainer.compile_mode],
        "deterministic": trainer.deterministic,
        **setting,
    }


def data_key(cfg: DictConfig, setting: Mapping[str, Any]) -> dict[str, Any]:
    return {"data": OmegaConf.to_container(cfg.data, resolve=True), "device": setting["device"],
            "hardware": setting["hardware"]}  # fmt: skip


def _arch(cfg: DictConfig) -> str:
    """A cell's name without its seed: `seg4-relu-res`."""
    return Cell.of(cfg).name.rpartition("-")[0]


def _digest(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Timings:
    """The cached and newly measured times of one `out_dir`; `measure=False` only reads the cache."""

    def __init__(self, out_dir: Path, *, measure: bool) -> None:
        self.path = out_dir / CACHE
        self.measure = measure
        self.entries: dict[str, dict[str, Any]] = {}
        self.measured: list[str] = []
        self.cached: set[str] = set()
        self.problems: dict[str, str] = {}
        try:
            loaded = json.loads(self.path.read_text())
            self.entries = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            pass

    def measure_missing(self, cells: Sequence[tuple[DictConfig, Mapping[str, Any]]]) -> None:
        """Time, together, the architectures of `cells` (each with its setting) that the cache lacks; nothing
        when this cache only reads."""
        if not self.measure:
            return
        missing: dict[str, tuple[DictConfig, Mapping[str, Any]]] = {}
        for cfg, setting in cells:
            digest = _digest(step_key(cfg, setting))
            if digest not in self.entries and digest not in self.problems:
                missing.setdefault(digest, (cfg, setting))
        groups: dict[tuple[Any, ...], list[str]] = {}
        for digest, (cfg, setting) in missing.items():
            groups.setdefault((setting["threads"], setting["device"], cfg.trainer.device), []).append(digest)
        for digests in groups.values():
            self._measure(digests, missing)

    def _measure(self, digests: list[str], missing: dict[str, tuple[DictConfig, Mapping[str, Any]]]) -> None:
        """Time the architectures `digests` name, which share a thread count and device, in turns."""
        cfg, setting = missing[digests[0]]
        started = time.perf_counter()
        with threads(int(setting["threads"])), tempfile.TemporaryDirectory(prefix="xablate-timing-") as scratch:
            timers: dict[str, StepTimer] = {}
            for digest in digests:
                try:
                    timers[digest] = StepTimer(missing[digest][0], select_device(cfg.trainer.device))
                except (ConfigError, RuntimeError) as err:
                    self.problems[digest] = f"{_arch(missing[digest][0])}: {str(err).strip().splitlines()[0]}"
                    print(f"time: {self.problems[digest]}; no estimate for it", flush=True)
            try:
                time_together(list(timers.values()))
                for digest, timer in timers.items():
                    self._keep(digest, step_key(*missing[digest]), timer.result(Path(scratch)), missing[digest][0])
            except RuntimeError as err:  # out of memory with every architecture built at once, say
                self.problems.update({d: f"timing failed: {str(err).strip().splitlines()[0]}" for d in timers})
                print(f"time: {self.problems[next(iter(timers))]}; no estimate", flush=True)
                return
        if len(timers) > 1:
            print(
                f"time: {len(timers)} architectures timed in turns in {time.perf_counter() - started:.0f} s", flush=True
            )

    def _keep(self, digest: str, key: dict[str, Any], times: StepTimes, cfg: DictConfig) -> None:
        self.entries[digest] = {
            "key": key,
            "times": asdict(times),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self.measured.append(digest)
        step = f"{times.step_s:.3g} s a step of {cfg.data.batch_size}"
        print(
            f"time: {_arch(cfg)}: {step}, {times.eval_image_s * 1e3:.3g} ms an evaluated image, "
            f"{times.checkpoint_s:.2g} s a checkpoint",
            flush=True,
        )

    def steps(self, cfg: DictConfig, setting: Mapping[str, Any]) -> StepTimes | None:
        """The step times of `cfg`'s architecture in `setting`, measured now or cached; None when neither."""
        digest = _digest(step_key(cfg, setting))
        entry = self.entries.get(digest)
        if entry is None:
            return None
        if digest not in self.measured:
            self.cached.add(digest)
        try:
            return StepTimes(**entry["times"])
        except (KeyError, TypeError):
            return None

    def data_s(self, cfg: DictConfig, setting: Mapping[str, Any]) -> float | None:
        """Seconds to load `cfg.data`: cached, else measured now (when allowed and the data are here)."""
        digest = _digest(data_key(cfg, setting))
        if digest not in self.entries and self.measure and cfg.data.check and digest not in self.problems:
            try:
                seconds = time_data(cfg, select_device(cfg.trainer.device))
            except (ConfigError, RuntimeError) as err:
                self.problems[digest] = str(err)
                return None
            self.entries[digest] = {"key": data_key(cfg, setting), "load_s": seconds}
            self.measured.append(digest)
        entry = self.entries.get(digest)
        return None if entry is None else float(entry.get("load_s", 0.0))

    def oldest(self) -> str | None:
        """When the oldest step time taken from the cache (not measured now) was measured."""
        return min((str(self.entries[d].get("measured_at", "")) for d in self.cached), default=None)

    def save(self) -> None:
        """Keep what was measured now; a cache that cannot be written costs a line, not the command."""
        if not self.measured:
            return
        try:
            write_json_atomic(self.path, self.entries)
        except WriteError as err:
            print(f"time: step times not kept: {err}", flush=True)
