"""Training speed and the CUDA paths of xablate on one GPU, printed as Markdown for BENCHMARKS.md.

  1. A bare PyTorch loop's images/s for the paper's Xception at 299x299 (1000 classes) and xception_mini
     at 28x28, per precision (32, bf16, 16-mixed), memory format, cuDNN autotuning and torch.compile,
     with the peak GPU memory of each.
  2. The harness, `python -m xablate` on the same cell (synthetic 299 px images for Xception, the real
     Fashion-MNIST for xception_mini), against the bare loop at the same settings: at steady state (the
     median of the logging intervals after the first) and over the whole run (start-up included).
  3. End to end: the default run (xception_mini, Fashion-MNIST, 2 epochs) at each precision and with
     torch.compile, the fp32 one twice to check that the same seed gives the same numbers on the GPU,
     and once with `trainer.deterministic=false` for the price of that.

Usage: python benchmarks/gpu_speed.py [--steps 30] [--data-root /usr/share/datasets/fashion-mnist]
"""

from __future__ import annotations

import argparse
import platform
from dataclasses import dataclass

import torch
from train_speed import bare_loop, harness


@dataclass(frozen=True)
class Shape:
    model: str
    image_size: int
    in_chans: int
    num_classes: int
    batch: int


PAPER = Shape("xception", 299, 3, 1000, 64)
MINI = Shape("xception_mini", 28, 1, 10, 256)

VARIANTS = [  # precision, channels_last, cudnn.benchmark, torch.compile
    ("32", False, False, False),
    ("32", True, False, False),
    ("bf16", False, False, False),
    ("bf16", True, False, False),
    ("16-mixed", True, False, False),
    ("bf16", True, True, False),
    ("bf16", True, False, True),
]


def bare(shape: Shape, precision: str, channels_last: bool, autotune: bool, compile: bool, steps: int) -> tuple:
    torch.backends.cudnn.benchmark = autotune
    torch.cuda.reset_peak_memory_stats()
    img_s = bare_loop(
        "depthwise", steps=steps, batch=shape.batch, channels_last=channels_last, compile=compile,
        warmup=10, model=shape.model, image_size=shape.image_size, in_chans=shape.in_chans,
        num_classes=shape.num_classes, device="cuda", precision=precision,
    )  # fmt: skip
    torch.backends.cudnn.benchmark = False
    return img_s, torch.cuda.max_memory_allocated() / 2**30


def data_overrides(shape: Shape, steps: int, data_root: str) -> list[str]:
    if shape is MINI:
        return [f"data.root={data_root}"]
    return [
        "model=xception", "data=synthetic", "data.image_size=299", "data.in_chans=3", "data.num_classes=1000",
        "data.mean=[0.5,0.5,0.5]", "data.std=[0.25,0.25,0.25]", f"data.train_subset={shape.batch * steps}",
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps of the bare loop at 299 px")
    parser.add_argument("--mini-steps", type=int, default=200, help="timed steps of the bare loop at 28 px")
    parser.add_argument("--harness-steps", type=int, default=80, help="steps of the harness run at 299 px")
    parser.add_argument("--mini-harness-steps", type=int, default=500, help="steps of the harness run at 28 px")
    parser.add_argument("--data-root", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--skip", nargs="*", default=[], choices=["bare", "harness", "e2e"])
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_speed.py needs a CUDA GPU; on the CPU use benchmarks/train_speed.py")
    print(
        f"Machine: {torch.cuda.get_device_name(0)}, {platform.processor() or platform.machine()} host, torch "
        f"{torch.__version__}, cuDNN {torch.backends.cudnn.version()}, TF32 in cuDNN convolutions "
        f"{torch.backends.cudnn.allow_tf32}, TF32 in matmuls {torch.backends.cuda.matmul.allow_tf32}\n",
        flush=True,
    )
    steps_of = {PAPER: args.steps, MINI: args.mini_steps}
    bare_at_default: dict[tuple[Shape, str], float] = {}
    if "bare" not in args.skip:
        print("| model | px | batch | precision | channels_last | cudnn.benchmark | compile | img/s | peak GiB |")
        print("|---|---|---|---|---|---|---|---|---|")
        for shape in (PAPER, MINI):
            for precision, channels_last, autotune, compile in VARIANTS:
                img_s, peak = bare(shape, precision, channels_last, autotune, compile, steps_of[shape])
                if channels_last and not autotune and not compile:
                    bare_at_default[shape, precision] = img_s
                cells = [shape.model, shape.image_size, shape.batch, precision, channels_last, autotune, compile]
                print("| " + " | ".join(map(str, cells)) + f" | {img_s:,.0f} | {peak:.1f} |", flush=True)
    if "harness" not in args.skip:
        print(
            "\n| model | data | precision | harness img/s, steady | harness img/s, whole run | bare img/s "
            "| steady / bare |"
        )
        print("|---|---|---|---|---|---|---|")
        for shape, precision in ((PAPER, "bf16"), (MINI, "32"), (MINI, "bf16")):
            steps = args.harness_steps if shape is PAPER else args.mini_harness_steps
            overrides = [
                "trainer.device=cuda", f"trainer.precision={precision}", *data_overrides(shape, steps, args.data_root)
            ]  # fmt: skip
            run = harness(
                "depthwise", steps=steps, batch=shape.batch, channels_last=True, overrides=overrides, intervals=5
            )
            ref = bare_at_default.get((shape, precision)) or bare(shape, precision, True, False, False, steps)[0]
            data = "synthetic" if shape is PAPER else "Fashion-MNIST"
            steady, whole = run["steady_img_per_s"], run["train_img_per_s"]
            print(
                f"| {shape.model} | {data} | {precision} | {steady:,.0f} | {whole:,.0f} | {ref:,.0f} "
                f"| {steady / ref:.1%} |",
                flush=True,
            )
    if "e2e" not in args.skip:
        print("\n| default run on the GPU | val top-1 | val loss | train img/s | wall s |")
        print("|---|---|---|---|---|")
        cases = [
            ("precision 32", ["trainer.precision=32"]),
            ("precision 32, again", ["trainer.precision=32"]),
            ("precision 32, deterministic=false", ["trainer.precision=32", "trainer.deterministic=false"]),
            ("precision bf16", ["trainer.precision=bf16"]),
            ("precision 16-mixed", ["trainer.precision=16-mixed"]),
            ("bf16 + torch.compile", ["trainer.precision=bf16", "trainer.compile=true"]),
        ]
        runs = []
        for label, overrides in cases:
            run = harness(
                "depthwise", steps=None, batch=MINI.batch, channels_last=True,
                overrides=["trainer.device=cuda", f"data.root={args.data_root}", *overrides],
            )  # fmt: skip
            print(
                f"| {label} | {run['val_top1']:.2%} | {run['val_loss']:.6f} | {run['train_img_per_s']:,.0f} "
                f"| {run['wall_s']:.1f} |",
                flush=True,
            )
            runs.append(run)
        same = all(runs[0][k] == runs[1][k] for k in ("val_top1", "val_loss", "val_top5"))
        print(f"\nThe same config and seed twice: {'the same' if same else 'DIFFERENT'} validation numbers")


if __name__ == "__main__":
    main()
