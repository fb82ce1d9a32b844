"""Training one cell: the loop, evaluation, checkpoints, and the files a run leaves behind.

The loop is deliberately plain (airbench / nanoGPT style): data already on the device, a schedule that
is a pure function of the step, metrics accumulated as tensors and read once per logging interval, and
time measured with synchronised clocks around training only, so `train_img_per_s` excludes evaluation.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from . import distributed
from .checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint, set_rng_state
from .config import model_kwargs
from .costs import profile
from .data import build_loaders, check_data
from .distributed import SINGLE, World, world_from_env
from .metrics import METRICS, MetricsLog, topk_correct
from .models import create_model
from .progress import Progress
from .provenance import provenance
from .results import SUMMARY, read_summary, write_json_atomic
from .reuse import completed_twin, reuse
from .run import axes, input_shape
from .runtime import (
    autocast,
    check_precision,
    deterministic,
    job_gpu,
    launcher_threads,
    select_device,
    synchronize,
    threads,
)
from .schedule import Schedule
from .tracking import Tracker


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class TrainState:
    """Everything about progress that a checkpoint must carry besides model, optimiser and RNG states."""

    step: int = 0
    best_val_top1: float = 0.0
    wall_s: float = 0.0
    train_s: float = 0.0
    train_images: int = 0
    interval_loss: float = 0.0
    interval_correct1: int = 0
    interval_correct5: int = 0
    interval_images: int = 0
    interval_s: float = 0.0
    last_val: dict[str, float] | None = None


class StopSignal:
    """Asks the loop to stop after the current step, which then checkpoints: on SIGTERM, a first Ctrl-C
    (a second aborts), and a cluster's pre-emption notice (submitit's SIGUSR2, or $SUBMITIT_PREEMPT_SIGNAL)
    when a handler for it is installed. `handoff` later passes that notice on to the handler it displaced
    (submitit's, which requeues the job), once the checkpoint is safe."""

    def __init__(self) -> None:
        self.requested: str | None = None
        signals = [signal.SIGTERM, signal.SIGINT]
        preempt = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)
        if preempt is not None and callable(signal.getsignal(preempt)):
            signals.append(preempt)
        self._previous = {sig: signal.getsignal(sig) for sig in signals}
        for sig in signals:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def handoff(self) -> None:
        """Deliver a pre-emption notice to the handler it displaced (submitit's: requeue, then exit)."""
        if self.requested is None:
            return
        sig = signal.Signals[self.requested]
        if sig not in (signal.SIGTERM, signal.SIGINT) and callable(self._previous.get(sig)):
            signal.raise_signal(sig)


def build_optimizer(cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Weight decay (the paper's L2) on conv and linear weights only, not on BatchNorm or biases."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=0.9, momentum=cfg.momentum, eps=cfg.eps)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, fused=True)


def polyak(model: nn.Module, decay: float | None) -> AveragedModel | None:
    """Polyak averaging, as the paper evaluates: an exponential moving average of the weights and the
    BatchNorm statistics, updated after every step; every evaluation uses it instead of the raw model."""
    if decay is None:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def build_schedule(cfg: DictConfig, total_steps: int, steps_per_epoch: int, batch_size: int) -> Schedule:
    if cfg.decay_samples:
        decay_every = max(1, round(cfg.decay_samples / batch_size))
    else:
        decay_every = max(1, round(cfg.decay_epochs * steps_per_epoch))
    return Schedule(cfg.schedule, cfg.lr, total_steps, cfg.warmup_steps, cfg.decay_rate, decay_every)


def archive_previous(out: Path, *, keep: bool = False) -> Path | None:
    """Move (or with `keep`, copy the record files of) an earlier attempt into `archive/<time>/`, so that
    a forced re-run or a retry loses nothing."""
    if keep:
        entries = [out / name for name in (SUMMARY, METRICS) if (out / name).exists()]
    else:
        entries = [p for p in out.iterdir() if p.name not in (".hydra", "archive") and not p.name.endswith(".log")]
    if not entries:
        return None
    dest = out / "archive" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    dest.mkdir(parents=True)
    for entry in entries:
        if keep:
            shutil.copy2(entry, dest / entry.name)
        else:
            shutil.move(str(entry), dest / entry.name)
    return dest


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Any, device: torch.device, precision: str, world: World = SINGLE
) -> dict[str, float]:
    """Loss and top-1/top-5 accuracy over the whole validation set (each rank its shard, then summed)."""
    model.eval()
    loss = torch.zeros((), device=device)
    correct1 = torch.zeros((), device=device, dtype=torch.long)
    correct5 = torch.zeros((), device=device, dtype=torch.long)
    count = 0
    for x, y in loader.batches(0):
        with autocast(device, precision):
            logits = model(x)
        loss += nn.functional.cross_entropy(logits.float(), y, reduction="sum")
        c1, c5 = topk_correct(logits, y)
        correct1 += c1
        correct5 += c5
        count += y.shape[0]
    model.train()
    total = torch.tensor(float(count), device=device)
    loss, correct1, correct5, total = distributed.all_sum(world, loss, correct1, correct5, total)
    n = total.item()
    return {"loss": loss.item() / n, "top1": correct1.item() / n, "top5": correct5.item() / n}


def train_run(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Train the cell, or skip it when it already completed; resume from `out/checkpoint.pt` if present."""
    out.mkdir(parents=True, exist_ok=True)
    previous = read_summary(out)
    if previous is not None and previous.get("status") == "completed" and not cfg.rerun:
        print(
            f"{out.name}: already completed (val top-1 {previous.get('val_top1', float('nan')):.2%}); "
            "skipped (rerun=true runs it again, keeping these results in archive/)",
            flush=True,
        )
        return {**previous, "skipped": True}
    world = world_from_env()
    fresh = (previous or {}).get("status") in (None, "dry_run")
    twin = completed_twin(out) if fresh and cfg.reuse and not cfg.rerun else None
    if twin is not None:
        if not world.is_main:
            return read_summary(twin) or {}
        print(
            f"{out.name}: completed earlier in study {twin.parent.name}; its files are copied here, not trained "
            "again (reuse=false trains it again)",
            flush=True,
        )
        return reuse(twin, out, str(cfg.study))
    check_data(cfg.data)
    device = distributed.init(world, job_gpu(select_device(cfg.trainer.device)))
    check_precision(device, str(cfg.trainer.precision))
    deterministic(device, cfg.trainer.deterministic)
    if world.is_main:
        if cfg.rerun and (dest := archive_previous(out)) is not None:
            print(f"{out.name}: earlier results moved to {dest.relative_to(out)}", flush=True)
        elif previous is not None and previous.get("status") == "failed":
            dest = archive_previous(out, keep=True)
            print(f"{out.name}: retrying a failed run (its record is kept in {dest and dest.relative_to(out)})")
        write_json_atomic(out / "provenance.json", provenance())
    distributed.barrier(world)
    try:
        with threads(cfg.trainer.threads or launcher_threads()):
            return _train(cfg, out, device, world)
    finally:
        distributed.shutdown(world)


def _train(cfg: DictConfig, out: Path, device: torch.device, world: World) -> dict[str, Any]:
    precision = str(cfg.trainer.precision)
    torch.manual_seed(cfg.seed)
    kwargs = model_kwargs(cfg)
    model = create_model(kwargs.pop("name"), **kwargs)
    cost = profile(model, input_shape(cfg))
    memory_format = torch.channels_last if cfg.trainer.channels_last else torch.contiguous_format
    if world.distributed and cfg.trainer.sync_bn:
        model = distributed.convert_sync_bn(model, device)
    model.to(device=device, memory_format=memory_format)
    train_loader, val_loader = build_loaders(
        cfg.data, seed=cfg.seed, device=device, rank=world.rank, world_size=world.size
    )
    steps_per_epoch = len(train_loader)
    total = math.ceil(cfg.trainer.epochs * steps_per_epoch)
    if cfg.trainer.max_steps is not None:
        total = min(total, cfg.trainer.max_steps)
    eval_every = cfg.trainer.eval_every or steps_per_epoch
    log_every = cfg.trainer.log_every
    optimizer = build_optimizer(cfg.optim, model)
    schedule = build_schedule(cfg.optim, total, steps_per_epoch, cfg.data.batch_size)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")
    averaged = polyak(model, cfg.optim.polyak_decay)
    eval_model = model if averaged is None else averaged.module
    step_model: nn.Module = model
    if world.distributed:
        step_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.trainer.compile:
        step_model = torch.compile(step_model, mode=cfg.trainer.compile_mode)

    state = TrainState()
    ckpt = load_checkpoint(out / CHECKPOINT, device)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        if averaged is not None:
            averaged.load_state_dict(ckpt["averaged"])
        state = TrainState(**ckpt["state"])
        set_rng_state(ckpt["rng"])
    resume_step = state.step if ckpt is not None else None
    metrics = MetricsLog(out / METRICS, resume_step) if world.is_main else None
    progress = Progress(axes(cfg)["name"], total, cfg.trainer.progress, enabled=world.is_main)
    if ckpt is not None:
        progress.message(f"resuming from step {state.step}/{total}")

    def checkpoint() -> None:
        if not world.is_main:
            return
        save_checkpoint(
            out / CHECKPOINT,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "state": asdict(state),
                **({"averaged": averaged.state_dict()} if averaged is not None else {}),
            },
        )

    status, error = "completed", None
    started = time.perf_counter() - state.wall_s
    steps_here = pending_images = 0
    last_checkpoint = state.step
    train_row: dict[str, Any] = {}
    loss_sum = torch.zeros((), device=device)
    correct = [torch.zeros((), device=device, dtype=torch.long) for _ in range(2)]

    def flush() -> None:
        """Move the device-side accumulators and the elapsed training time into `state` (one sync)."""
        nonlocal pending_images, segment_start
        synchronize(device)
        images = torch.tensor(float(pending_images), device=device)
        summed_loss, correct1, correct5, images = distributed.all_sum(world, loss_sum, *correct, images)
        now = time.perf_counter()
        state.train_s += now - segment_start
        state.interval_s += now - segment_start
        segment_start = now
        state.train_images += int(images.item())
        state.interval_images += int(images.item())
        pending_images = 0
        state.interval_loss += summed_loss.item()
        state.interval_correct1 += int(correct1.item())
        state.interval_correct5 += int(correct5.item())
        loss_sum.zero_()
        correct[0].zero_()
        correct[1].zero_()
        if not math.isfinite(state.interval_loss):
            kept = f"the checkpoint of step {last_checkpoint} is intact" if last_checkpoint else "no checkpoint yet"
            raise NonFiniteLoss(f"training loss became {state.interval_loss} by step {state.step}; {kept}")

    def write_row(row: dict[str, Any]) -> None:
        if metrics is not None:
            metrics.write(row)

    def log_wandb(values: dict[str, float], step: int) -> None:
        if tracker is not None:
            tracker.log(values, step)

    stop = StopSignal()
    tracker = Tracker(cfg, out) if world.is_main else None
    stopping = False
    try:
        segment_start = time.perf_counter()  # after W&B's start-up: training time only
        while state.step < total and not stopping:
            epoch, start = divmod(state.step, steps_per_epoch)
            for x, y in train_loader.batches(epoch, start):
                lr = schedule(state.step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x = x.contiguous(memory_format=memory_format)
                with autocast(device, precision):
                    logits = step_model(x)
                    loss = criterion(logits, y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if averaged is not None:
                    averaged.update_parameters(model)
                loss_sum += loss.detach().float() * y.shape[0]
                c1, c5 = topk_correct(logits.detach(), y)
                correct[0] += c1
                correct[1] += c5
                pending_images += y.shape[0]
                state.step += 1
                steps_here += 1
                at_eval = state.step % eval_every == 0 or state.step == total
                at_log = state.step % log_every == 0 or state.step == total
                if at_log or at_eval:
                    flush()
                if at_log:
                    n = state.interval_images
                    train_row = {
                        "loss": state.interval_loss / n,
                        "top1": state.interval_correct1 / n,
                        "top5": state.interval_correct5 / n,
                        "img_per_s": n / state.interval_s,
                    }
                    when = {"epoch": state.step / steps_per_epoch, "wall_s": time.perf_counter() - started}
                    write_row({"step": state.step, "split": "train", "lr": lr, **when, **train_row})
                    logged = train_row | when | {"lr": lr}
                    log_wandb({f"train/{k}": v for k, v in logged.items()}, state.step)
                    state.interval_loss, state.interval_s, state.interval_images = 0.0, 0.0, 0
                    state.interval_correct1 = state.interval_correct5 = 0
                if at_eval:
                    val = evaluate(eval_model, val_loader, device, precision, world)
                    state.best_val_top1 = max(state.best_val_top1, val["top1"])
                    state.last_val = val
                    state.wall_s = time.perf_counter() - started
                    epoch_f = state.step / steps_per_epoch
                    when = {"epoch": epoch_f, "wall_s": state.wall_s}
                    write_row({"step": state.step, "split": "val", "lr": lr, **when, **val})
                    log_wandb({f"val/{k}": v for k, v in (val | when).items()}, state.step)
                    eta = state.train_s / max(1, steps_here) * (total - state.step)
                    recent = train_row or {
                        "loss": state.interval_loss / max(1, state.interval_images),
                        "img_per_s": state.interval_images / max(state.interval_s, 1e-9),
                    }
                    progress.evaluation(state.step, epoch_f, recent, val, state.wall_s, eta)
                    checkpoint()
                    last_checkpoint = state.step
                    segment_start = time.perf_counter()
                else:
                    progress.step(state.step, state.train_images / max(state.train_s, 1e-9), state.train_s, steps_here)
                stopping = distributed.any_rank(world, stop.requested is not None, device)
                if stopping or state.step >= total:
                    break
        if stopping and state.step < total:
            status = "interrupted"
            flush()
            state.wall_s = time.perf_counter() - started
            checkpoint()
            stop.requested = stop.requested or "SIGTERM"
            progress.message(f"stopped by {stop.requested} at step {state.step}; checkpoint saved, run again to resume")
    except NonFiniteLoss as err:
        status, error = "failed", str(err)
        progress.message(f"failed: {error}")
    except Exception as err:
        status, error = "failed", f"{type(err).__name__}: {err}"
        raise
    finally:
        stop.restore()
        state.wall_s = time.perf_counter() - started
        summary = _summary(cfg, status, error, state, cost, total, device, world)
        if stop.requested:
            summary["stopped_by"] = stop.requested
        if world.is_main:
            write_json_atomic(out / SUMMARY, summary)
        if tracker is not None:
            tracker.set_summary(summary)
            tracker.finish(0 if status == "completed" else 1)
    stop.handoff()
    return summary


def _summary(
    cfg: DictConfig,
    status: str,
    error: str | None,
    state: TrainState,
    cost: Any,
    total: int,
    device: torch.device,
    world: World,
) -> dict[str, Any]:
    val = state.last_val or {}
    summary: dict[str, Any] = {
        "status": status,
        **axes(cfg),
        "params": cost.params,
        "macs": cost.macs,
        "steps": state.step,
        "total_steps": total,
        "val_top1": val.get("top1"),
        "val_top5": val.get("top5"),
        "val_loss": val.get("loss"),
        "best_val_top1": state.best_val_top1 if state.last_val else None,
        "train_img_per_s": state.train_images / state.train_s if state.train_s else None,
        "train_s": state.train_s,
        "wall_s": state.wall_s,
        "device": device.type,
        "threads": torch.get_num_threads(),
        "world_size": world.size,
        "precision": str(cfg.trainer.precision),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if error:
        summary["error"] = error
    return summary


def exit_code(summary: dict[str, Any]) -> int:
    """The process exit status a single run ends with: 0 completed (or skipped), 1 failed, 128+N by signal N."""
    if summary["status"] == "interrupted":
        return 128 + signal.Signals[summary.get("stopped_by", "SIGTERM")].value
    return 1 if summary["status"] == "failed" else 0
