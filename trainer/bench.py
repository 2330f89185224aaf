"""Time the trainer: `python -m study.bench`.

A short version of training that times it (as nanoGPT's bench.py is). What is timed is the
trainer itself: `trainer.train.train()` for its epochs and trials, and its `build_network`,
`autocast_for` and `uses_channels_last` for the one thing it is compared with. Three modes:

- default: train() against a conventional reference, the way Ray Tune's PyTorch tutorial feeds a
  model: a torchvision Dataset over the same uint8 host arrays with per-sample transforms (to
  float, normalise, blur), a DataLoader (shuffle, workers, pin_memory on CUDA) and the usual loop
  (`.to(device)` and `loss.item()` per batch), on train()'s network, initial weights, memory
  format, precision, optimiser and LR schedule, with the same data, blur level and batch size.
  Prints samples/s of both, their ratio `N.Nx` and each side's peak memory. `--trial N` also
  times one whole N-epoch trial of train() end to end.
- `--methods`: every method trained by train() on the same data, model and batch size; seconds
  per curriculum epoch and per whole trial, and their ratio to the baseline's. `--clock cpu`
  reads train()'s timing as this process's CPU time (steadier on a shared CPU, one thread).
- `--pack 1,2,4,8` (CUDA only, trainer/bench_pack.py): trials per GPU-hour when N trials share one
  GPU, and the fractional GPU per trial to ask Ray Tune for.

    python -m study.bench                                  # digits, small CNN, CPU or GPU
    python -m study.bench --methods --dataset mnist5k      # every method's cost against the baseline
    python -m study.bench --dataset mnist-shaped --trial 20
    python -m study.bench --dataset cifar-shaped --model resnet18 --trial 20
    python -m study.bench --pack 1,2,4,8                   # MNIST-shaped small CNN, CUDA only

Targets and goals are printed beside the figures, never asserted: the exit status does not depend
on them. `mnist-shaped` and `cifar-shaped` are random uint8 images shaped and split like MNIST and
CIFAR-10, so that a GPU machine needs no dataset files (speed does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import sys
import time
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import transforms
from torchvision.datasets import VisionDataset

from . import blur as blurring
from .config import METHODS, ConfigError, TrialConfig
from .data import DataError, DatasetArrays
from .bench_tools import (DATASETS, WARMUP_EPOCHS, BenchError, PeakMemory, bench_arrays, first,
                          machine_info, print_machine, resident, sync, time_trial, trial_config, usable_cores)
from .train import (make_lr_schedule, make_optimizer, autocast_for, build_network, resolve_device, train,
                    uses_channels_last)

TARGETS = {"cpu": ("digits", "small_cnn", 5.0), "cuda": ("mnist-shaped", "small_cnn", 30.0)}  # trainer/reference
TRIAL_TARGETS = {("mnist-shaped", "small_cnn"): 5.0, ("cifar-shaped", "resnet18"): 90.0}  # GPU, 20 epochs
# --methods: the most a method may cost relative to the baseline, per curriculum epoch or over the trial.
METHOD_GOALS = {**{m: (1.1, "per epoch") for m in ("sharpening", "anti", "random_order", "blur_aug",
                                                   "annealing", "combined")},
                "cbs": (1.3, "over the trial")}


# ---------------------------------------------------------------------------------------------
# Data


# ---------------------------------------------------------------------------------------------
# The trainer, timed by itself (train() reports each epoch's seconds, validation excluded)

class _Stop(Exception):
    """Raised from train()'s report callback to end a trial after the epochs wanted."""


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
"""train()'s own timing read on the wall clock (as is) or on this process's CPU time.

With one torch thread, CPU time hardly depends on what else runs: on the shared 2-core VM at load
3-10, --methods' per-run medians of the baseline on digits (one thread) spread 0.08-0.22 s/epoch on
the wall clock and 0.033-0.034 s on the CPU clock. With more threads it also counts their spin-waits.
"""


def train_epochs(config: TrialConfig, arrays: DatasetArrays, epochs: Optional[int] = None,
                 clock=time.perf_counter) -> list[dict]:
    """train()'s per-epoch metrics, the trial stopped after `epochs` epochs (None: the whole trial),
    its timings read on `clock`."""
    records: list[dict] = []

    def report(metrics: dict, state) -> None:
        records.append(metrics)
        if epochs is not None and metrics["epoch"] >= epochs:
            raise _Stop

    try:
        train(config, report, data=arrays, clock=clock)
    except _Stop:
        pass
    return records


def constant_level_config(base: dict, level: int, epochs: int) -> tuple[TrialConfig, int]:
    """A config whose first WARMUP_EPOCHS + epochs epochs all train at `level`; returns it and that count.

    Level 1 is baseline. Level n >= 2 is sharpening with K = n, whose first block of
    `epochs_per_level` epochs is at level n; the bench stops the trial after that block. One
    epoch more than timed keeps the end-of-trial test and robustness evaluation out of the run.
    """
    block = WARMUP_EPOCHS + epochs
    if level == 1:
        settings = {"method": "baseline", "epochs": block + 1}
    else:
        settings = {"method": "sharpening", "K": level, "epochs_per_level": block, "epochs": (level - 1) * block + 1}
    return TrialConfig.from_dict({**base, **settings}), block


def _throughput(samples: int, batch_size: int, seconds: list[float]) -> dict:
    timed = seconds[WARMUP_EPOCHS:]
    return {"samples_per_second": samples * len(timed) / sum(timed), "epoch_seconds": timed,
            "warmup_seconds": seconds[:WARMUP_EPOCHS], "samples_per_epoch": samples,
            "steps_per_epoch": math.ceil(samples / batch_size)}


def time_trainer(arrays: DatasetArrays, config: TrialConfig, block: int, level: int) -> dict:
    """Samples/s of train() at a constant blur level, from its own per-epoch timing (the first
    epoch, which also blurs the training set once, is the warm-up)."""
    records = train_epochs(config, arrays, block)
    levels = {m["blur_level"] for m in records}
    if levels != {level}:
        raise BenchError(f"the trainer trained at levels {sorted(levels)}, expected only {level}")
    return _throughput(len(arrays.train_x), config.batch_size, [m["epoch_seconds"] for m in records])


def time_blur(images: torch.Tensor, kernel: str, levels: list[int], repeats: int, whole: bool,
              timer=time.perf_counter) -> float:
    """Best-of-`repeats` seconds to blur `images` (the whole set in chunks, or one batch), mean over levels."""
    blur = blurring.blur_in_chunks if whole else blurring.blur
    per_level = []
    for level in levels:
        blur(images, kernel, level)  # warm-up
        best = math.inf
        for _ in range(repeats):
            started = timer()
            blur(images, kernel, level)
            sync(images.device)
            best = min(best, timer() - started)
        per_level.append(best)
    return float(np.mean(per_level))


def warm_up(arrays: DatasetArrays, config: TrialConfig, level: int) -> None:
    """An untimed train() of `config` on one batch of images, and the reference's transform on one.

    The process's one-time lazy initialisation (kernel libraries, thread pools, JIT-generated
    kernels: ~170 MB of RSS on the 2-core CPU VM) is paid here, not by whichever side runs first.
    """
    few = first(arrays, config.batch_size)
    train(config, data=few)
    reference_dataset(few, config.kernel, level)[0]


# ---------------------------------------------------------------------------------------------
# The conventional reference: torchvision Dataset + per-sample transforms + DataLoader

class ToScaledFloat:
    """uint8 (C, H, W) → float32 in [0, 1] (torchvision's ToTensor divides by 255; digits needs 1/16)."""

    def __init__(self, scale: float):
        self.scale = scale

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image.float() * self.scale


class Blur:
    """The study's blur on one sample: trainer.blur.blur on a (1, C, H, W) view, so the math is identical."""

    def __init__(self, kernel: str, level: int):
        self.kernel, self.level = kernel, level

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return blurring.blur(image.unsqueeze(0), self.kernel, self.level).squeeze(0)


class ArrayImages(VisionDataset):
    """uint8 images (N, C, H, W) and labels as a torchvision dataset; `transform` runs per sample."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        super().__init__(root=None, transform=transform)
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(torch.from_numpy(self.images[index])), int(self.labels[index])


def reference_dataset(arrays: DatasetArrays, kernel: str, level: int) -> ArrayImages:
    """Per-sample transforms doing what the trainer does to the whole set: x·scale, (x − mean)/std
    (train's `to_device`), then the blur (train blurs the normalised tensors)."""
    steps = [ToScaledFloat(arrays.scale), transforms.Normalize(arrays.mean.tolist(), arrays.std.tolist())]
    if level > 1:
        steps.append(Blur(kernel, level))
    return ArrayImages(arrays.train_x, arrays.train_y, transforms.Compose(steps))


def time_reference(arrays: DatasetArrays, config: TrialConfig, level: int, epochs: int, num_workers: int) -> dict:
    """Samples/s of the conventional pipeline over `epochs` timed epochs after the warm-up.

    The network, its initial weights, memory format and precision, the optimiser and the LR
    schedule are train()'s own (`build_network`, `uses_channels_last`, `autocast_for`), so the
    ratio measures the input pipeline and the loop, not different arithmetic.
    """
    from torch.utils.data import DataLoader

    device = resolve_device(config.device)
    network = build_network(config, arrays.shape, arrays.num_classes, device)
    model, channels_last, autocast = network.model, uses_channels_last(config), autocast_for(config, device)
    dataset = reference_dataset(arrays, config.kernel, level)
    steps_per_epoch = math.ceil(len(dataset) / config.batch_size)
    optimizer = make_optimizer(config, network.net, network.activations.thetas())
    scheduler = make_lr_schedule(config, optimizer, config.epochs * steps_per_epoch)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, num_workers=num_workers,
                        pin_memory=device.type == "cuda", persistent_workers=num_workers > 0,
                        generator=torch.Generator().manual_seed(config.seed))
    seconds = []
    for _ in range(WARMUP_EPOCHS + epochs):
        started = time.perf_counter()
        model.train()
        running_loss = 0.0
        for x, y in loader:  # drop_last=False: every epoch sees all len(dataset) samples, like train()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = F.cross_entropy(model(x).float(), y)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running_loss += loss.item()  # as in the tutorial; on CUDA a sync per batch
        sync(device)
        seconds.append(time.perf_counter() - started)
    del loader  # shuts persistent workers down, so their peak RSS is readable (RUSAGE_CHILDREN)
    return _throughput(len(dataset), config.batch_size, seconds)


# ---------------------------------------------------------------------------------------------
# Every method at the baseline's cost (--methods)

def method_configs(base: dict, epochs: int, side: int) -> tuple[dict[str, TrialConfig], dict[str, str]]:
    """Every method's trial: `epochs` curriculum epochs, then as many on the originals; and the
    methods the model cannot run, with the reason (cbs on the MLP).

    Same data, model, batch size, optimiser and seed. The curricula span the first `epochs`
    epochs: blur levels K..2 (K = min(epochs + 1, the image's top level)), θ annealed from π/4
    and σ > 0 over them; learned θ is learned throughout. The last `epochs` are plain training.
    """
    K = min(epochs + 1, blurring.max_level(side, side))
    schedule = {"K": K, "epochs_per_level": epochs // (K - 1), "anneal_epochs": epochs, "smooth_epochs": epochs}
    configs, skipped = {}, {}
    for method in METHODS:
        try:
            configs[method] = TrialConfig.from_dict({**base, **schedule, "method": method, "epochs": 2 * epochs})
        except ConfigError as error:
            if method == "baseline":
                raise
            skipped[method] = str(error)
    return configs, skipped


def time_methods(arrays: DatasetArrays, configs: dict[str, TrialConfig], epochs: int, runs: int,
                 on: str = "wall") -> dict:
    """`runs` rounds of every method's whole trial, interleaved so that load drift hits all methods alike.

    Per run and method: the median of train()'s epoch_seconds over the method's curriculum epochs
    (the first `epochs` for methods without one) and train_seconds of the whole trial, each also
    as a ratio to the baseline's of the same run; all read on `CLOCKS[on]`.
    """
    measured: dict[str, list[dict]] = {m: [] for m in configs}
    names = list(configs)
    for run in range(runs):
        shift = run * len(names) // runs  # each run starts elsewhere in the list: no method always runs first
        for method in names[shift:] + names[:shift]:
            config = configs[method]
            records = train_epochs(config, arrays, clock=CLOCKS[on])
            window = records[: config.curriculum_epochs or epochs]
            measured[method].append({"epoch_seconds": statistics.median(m["epoch_seconds"] for m in window),
                                     "trial_seconds": records[-1]["train_seconds"]})
    rows = {}
    for method, per_run in measured.items():
        row = {}
        for key in ("epoch_seconds", "trial_seconds"):
            values = [r[key] for r in per_run]
            ratios = [r[key] / b[key] for r, b in zip(per_run, measured["baseline"])]
            row[key] = _spread(values)
            row[key.replace("seconds", "ratio")] = _spread(ratios)
        rows[method] = row
    return rows


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def goal_verdict(method: str, row: dict) -> str:
    if method == "learned_theta":
        return "reported (θ is a custom autograd op)"
    if method not in METHOD_GOALS:
        return ""
    goal, over = METHOD_GOALS[method]
    ratio = row["epoch_ratio" if over == "per epoch" else "trial_ratio"]["median"]
    return f"<= {goal:g}x {over}: {'met' if ratio <= goal else 'NOT met'}"


# ---------------------------------------------------------------------------------------------
# Peak memory and the machine


# ---------------------------------------------------------------------------------------------
# Command line

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m study.bench",
        description="Time train(): against a conventional DataLoader pipeline (samples/s, ratio, peak "
                    "memory), every method against the baseline (--methods), or packed trials on a GPU (--pack).")
    parser.add_argument("--dataset", choices=DATASETS, default=None,
                        help="digits (default; mnist-shaped with --pack), mnist5k, or synthetic "
                             "mnist-/cifar-shaped data")
    parser.add_argument("--model", default="small_cnn", help="small_cnn (default), mlp or resnet18")
    parser.add_argument("--level", type=int, default=2, help="blur level trained at (1 = no blur; default 2)")
    parser.add_argument("--kernel", default="box", help="box (default), gaussian or downsample")
    parser.add_argument("--batch-size", type=int, default=None, help="default 64 for digits and mnist5k, else 128")
    parser.add_argument("--epochs", type=int, default=3,
                        help=f"timed epochs per side, after {WARMUP_EPOCHS} warm-up epoch; with --methods, "
                             "curriculum epochs per trial, followed by as many on the originals (default 3)")
    parser.add_argument("--methods", action="store_true",
                        help="time every method's train() against the baseline's (seconds per epoch and per trial)")
    parser.add_argument("--runs", type=int, default=3, help="--methods: rounds of every method (default 3)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="--methods: read train()'s epoch timing as wall time (default) or as this process's "
                             "CPU time (CPU only; steadier on a shared machine with --threads 1)")
    parser.add_argument("--device", default="auto", help="auto (default: cuda if present), cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="auto",
                        help="auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16; used by both sides")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model on both sides")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="DataLoader workers of the reference (default 0 on CPU, min(8, cores - 1) on CUDA)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's, as train() uses them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trial", type=int, default=0, metavar="EPOCHS",
                        help="also time one whole train() trial of this many epochs, end to end")
    parser.add_argument("--pack", default=None, metavar="N,N,...",
                        help="CUDA only: trials per GPU-hour with N concurrent trials (e.g. 1,2,4,8); "
                             "each trial runs --trial epochs (default 5)")
    parser.add_argument("--limit", type=int, default=0, metavar="N",
                        help="use only the first N images of each split (quick smoke runs of the big shapes)")
    parser.add_argument("--json", action="store_true", help="also print every figure as one JSON line (last line)")
    return parser


def default_workers(device: torch.device) -> int:
    # Fairness: the reference gets the worker count that is fastest for it where we measured.
    # On a 2-core CPU, 0 beats 1 and 2 for digits (workers compete with the 2 compute threads for
    # the same cores and add IPC per batch), so 0. On a GPU host the main process is free to
    # launch kernels while workers transform, so the tutorial's 8 (fewer when cores are scarce).
    return max(0, min(8, usable_cores() - 1)) if device.type == "cuda" else 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except (BenchError, ConfigError, DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _main(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.pack is not None:
        from .bench_pack import pack_main

        if args.methods:
            raise BenchError("--pack and --methods are two benchmarks; run one at a time")
        return pack_main(args)
    for flag in ("epochs", "runs"):
        if getattr(args, flag) < 1:
            raise BenchError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if args.limit < 0:
        raise BenchError(f"--limit must be >= 1, got {args.limit}")
    if args.kernel not in blurring.KERNELS:
        raise BenchError(f"kernel {args.kernel!r} is not allowed; choose one of {list(blurring.KERNELS)}")
    dataset = args.dataset or "digits"
    device = resolve_device(args.device)
    arrays = bench_arrays(dataset, args.limit)
    batch_size = args.batch_size or (64 if dataset in ("digits", "mnist5k") else 128)
    base = {"dataset": arrays.name, "model": args.model, "kernel": args.kernel, "batch_size": batch_size,
            "device": str(device), "precision": args.precision, "compile": args.compile, "seed": args.seed}
    if args.methods:
        if args.trial:
            raise BenchError("--methods times whole trials already; leave --trial out")
        if args.clock == "cpu" and device.type != "cpu":
            raise BenchError("--clock cpu measures CPU time: use it with --device cpu")
        return _methods_main(args, dataset, arrays, base, device)
    return _compare_main(args, dataset, arrays, base, device)


def _compare_main(args, dataset: str, arrays: DatasetArrays, base: dict, device: torch.device) -> int:
    channels, height, width = arrays.shape
    blurring.check_level(args.level, height, width)
    config, block = constant_level_config(base, args.level, args.epochs)
    if args.trial:
        trial_config(base, args.level, args.trial)  # fail now, not after the timed epochs
    workers = default_workers(device) if args.num_workers is None else args.num_workers
    info = machine_info(device)
    n_train = len(arrays.train_x)
    print(f"trainer.bench: {dataset} ({n_train:,} train images {channels}x{height}x{width}), {args.model}, "
          f"{args.kernel} blur level {args.level}, batch {config.batch_size}, {args.epochs} timed epochs after "
          f"{WARMUP_EPOCHS} warm-up, precision {args.precision}{', compiled' if args.compile else ''}")
    print_machine(device, info)

    # Both sides: the same arrays, network (train()'s, same seed), precision, optimiser, LR schedule,
    # batch size, samples per epoch and blur; timed over the same epochs after the same warm-up,
    # validation excluded. Only the input pipeline and the loop differ. The trainer's peak memory
    # includes its per-epoch validation pass (untimed); the reference has none.
    warm_up(arrays, config, args.level)
    memory = PeakMemory(device)
    memory.reset()
    trainer = time_trainer(arrays, config, block, args.level)
    trainer_peak, trainer_baseline = memory.peak_mb(), memory.baseline_mb
    memory.reset()
    reference = time_reference(arrays, config, args.level, args.epochs, workers)
    reference_peak, reference_baseline = memory.peak_mb(), memory.baseline_mb
    workers_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if workers else None
    blur_seconds = (time_blur(resident(arrays, config).train_x, args.kernel, [args.level], 3, whole=True)
                    if args.level > 1 else 0.0)
    speedup = trainer["samples_per_second"] / reference["samples_per_second"]

    worker_note = f" (+ workers up to {workers_peak:,.0f} MB RSS each)" if workers_peak else ""
    print(f"reference  (DataLoader, per-sample blur, workers={workers}):  "
          f"{reference['samples_per_second']:>10,.0f} samples/s  peak {reference_peak:,.0f} MB "
          f"(+{reference_peak - reference_baseline:,.0f} MB){worker_note}")
    print(f"trainer    (resident tensors, index slices):{'':<11}"
          f"{trainer['samples_per_second']:>10,.0f} samples/s  peak {trainer_peak:,.0f} MB "
          f"(+{trainer_peak - trainer_baseline:,.0f} MB)")
    target_dataset, target_model, target = TARGETS[device.type if device.type == "cuda" else "cpu"]
    where = "GPU" if device.type == "cuda" else "CPU"
    on_target = (dataset, args.model) == (target_dataset, target_model)
    if on_target:
        verdict = "met" if speedup >= target else "NOT met"
        print(f"speedup {speedup:.1f}x  (target >= {target:g}x on {where}: {verdict})")
    else:
        print(f"speedup {speedup:.1f}x  (the {where} target, >= {target:g}x, is for {target_dataset}/{target_model})")
    epoch_seconds = min(trainer["epoch_seconds"])
    print(f"peak memory is the {memory.kind} of each side (+ over what was in use when it started); "
          f"the trainer blurs its resident training set once per level change: {1000 * blur_seconds:.1f} ms "
          f"({100 * blur_seconds / epoch_seconds:.0f}% of one of its epochs, {1000 * epoch_seconds:.0f} ms)")

    figures = {
        "dataset": dataset, "model": args.model, "kernel": args.kernel, "level": args.level,
        "batch_size": config.batch_size, "epochs": args.epochs, "warmup_epochs": WARMUP_EPOCHS,
        "precision": args.precision, "compile": args.compile, "num_workers": workers, **info,
        "samples_per_epoch": n_train, "steps_per_epoch": trainer["steps_per_epoch"],
        "reference_samples_per_s": reference["samples_per_second"],
        "trainer_samples_per_s": trainer["samples_per_second"], "speedup": speedup,
        "speedup_target": target if on_target else None,
        "reference_epoch_seconds": reference["epoch_seconds"], "trainer_epoch_seconds": trainer["epoch_seconds"],
        "reference_peak_mb": reference_peak, "trainer_peak_mb": trainer_peak, "peak_memory_kind": memory.kind,
        "reference_baseline_mb": reference_baseline, "trainer_baseline_mb": trainer_baseline,
        "reference_workers_peak_rss_mb": workers_peak, "trainer_blur_seconds": blur_seconds,
    }
    if args.trial:
        trial = trial_config(base, args.level, args.trial)
        seconds = time_trial(arrays, trial)
        trial_target = TRIAL_TARGETS.get((dataset, args.model)) if args.trial == 20 else None
        note = ""
        if trial_target is not None:
            verdict = f": {'met' if seconds <= trial_target else 'NOT met'}" if device.type == "cuda" else ""
            note = f"  (target <= {trial_target:g} s on a GPU{verdict})"
        print(f"trial      (train(), {args.trial} epochs, {trial.method}{f' K={trial.K}' if trial.blurs else ''}, "
              f"end to end): {seconds:.2f} s{note}")
        figures.update(trial_epochs=args.trial, trial_method=trial.method, trial_seconds=seconds,
                       trial_target_seconds=trial_target)
    if args.json:
        print(json.dumps(figures))
    return 0


def _methods_main(args, dataset: str, arrays: DatasetArrays, base: dict, device: torch.device) -> int:
    channels, height, width = arrays.shape
    epochs, runs, cpu = args.epochs, args.runs, args.clock == "cpu"
    configs, skipped = method_configs(base, epochs, min(height, width))
    sharpening = configs["sharpening"]
    info = machine_info(device)
    print(f"trainer.bench --methods: {dataset} ({len(arrays.train_x):,} train images {channels}x{height}x{width}), "
          f"{args.model}, batch {sharpening.batch_size}, {2 * epochs}-epoch trials ({epochs} curriculum + "
          f"{epochs} on originals; K={sharpening.K} {args.kernel}), {runs} runs, {args.clock} clock, "
          f"precision {args.precision}")
    print_machine(device, info)
    for config in configs.values():  # every method's code path initialised before anything is timed
        train(config, data=first(arrays, config.batch_size))
    rows = time_methods(arrays, configs, epochs, runs, args.clock)

    def cell(spread: dict, unit: str, digits: int) -> str:
        return f"{spread['median']:.{digits}f}{unit} ({spread['min']:.{digits}f}-{spread['max']:.{digits}f})"

    unit = "CPU s" if cpu else "s"
    print(f"{'method':<14} {unit + '/epoch (min-max)':>24} {'ratio (min-max)':>20} "
          f"{'trial ' + unit + ' (min-max)':>24} {'ratio (min-max)':>20}  goal")
    for method, row in rows.items():
        print(f"{method:<14} {cell(row['epoch_seconds'], '', 3):>24} {cell(row['epoch_ratio'], 'x', 2):>20} "
              f"{cell(row['trial_seconds'], '', 2):>24} {cell(row['trial_ratio'], 'x', 2):>20}  "
              f"{goal_verdict(method, row)}".rstrip())
    for method, reason in skipped.items():
        print(f"{method:<14} skipped: {reason}")
    print(f"{unit}/epoch: train()'s epoch_seconds{' on the CPU clock' if cpu else ''} (validation excluded), "
          f"median over the method's curriculum epochs (the first {epochs} for methods without one), median of "
          f"{runs} runs (min-max); trial {unit}: its train_seconds (cbs smooths only while σ > 0: {epochs} of "
          f"{2 * epochs} epochs); ratios: to the baseline's in the same run")

    tensors = resident(arrays, sharpening)
    batch = tensors.train_x[torch.arange(min(sharpening.batch_size, len(tensors.train_x)), device=device)]
    levels = list(range(2, sharpening.K + 1))
    timer = time.process_time if cpu else time.perf_counter
    batch_blur = time_blur(batch, args.kernel, levels, 20, whole=False, timer=timer)
    whole_blur = time_blur(tensors.train_x, args.kernel, levels, 3, whole=True, timer=timer)
    steps = math.ceil(len(arrays.train_x) / sharpening.batch_size)
    baseline_epoch = rows["baseline"]["epoch_seconds"]["median"]
    print(f"blur_aug blurs every batch: {1000 * batch_blur:.2f} ms per batch of {len(batch)} (mean over levels "
          f"{levels[0]}..{levels[-1]}) x {steps} steps = {1000 * batch_blur * steps:.1f} ms per epoch "
          f"({100 * batch_blur * steps / baseline_epoch:.0f}% of a baseline epoch); sharpening, anti, "
          f"random_order and combined blur the resident training set once per level change: "
          f"{1000 * whole_blur:.1f} ms ({100 * whole_blur / baseline_epoch:.0f}%)")
    if args.json:
        print(json.dumps({"dataset": dataset, "model": args.model, "batch_size": sharpening.batch_size,
                          "curriculum_epochs": epochs, "trial_epochs": 2 * epochs, "K": sharpening.K,
                          "kernel": args.kernel, "runs": runs, "clock": args.clock, **info, "methods": rows,
                          "skipped": skipped,
                          "goals": {m: {"ratio": g, "over": o} for m, (g, o) in METHOD_GOALS.items()},
                          "batch_blur_seconds": batch_blur, "whole_blur_seconds": whole_blur,
                          "steps_per_epoch": steps}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
