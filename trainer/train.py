"""How one trial trains: `train(config, report)`. Pure PyTorch: no Ray, Optuna or MLflow here.

Per epoch it calls `report(metrics, state)` where `state()` returns the full training state
(model, optimiser, LR schedule, RNGs, epoch) for a checkpoint; passing that state back as
`resume=` continues exactly as an uninterrupted run would. The last report carries the test
metrics, the blur-robustness profile, the accuracy on every common corruption of the test split
(the second endpoint, `trainer.corruptions`; its time apart in `corruption_seconds`) and `outcome`
("completed" or "diverged").

Also a command line for one trial without Ray:
    python -m study.train --dataset digits --method sharpening --K 3 --epochs 8
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import sys
import time
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import blur as blurring
from . import corruptions
from .config import ConfigError, OneLineParser, TrialConfig, field_docs
from .corruptions import CorruptedTestSet
from .data import DataError, DatasetArrays, DeviceData, as_tensor, load_arrays, to_device, with_regime
from .models import Activations, Smoothing, build_model
from .schedules import RANDOM_LEVEL, level_plan, sigma_at, theta_at

Report = Callable[[dict, Callable[[], dict]], None]
EVAL_BATCH = 2048
# Every evaluation's batch on a CPU (validation, test, the blur-robustness profile, the corruptions):
# measured on mnist5k's small CNN (1 thread, channels_last), 2048 images a batch cost 395 ms per
# 1,000 images and 256 cost 132 (activations that fit in cache).
CPU_EVAL_BATCH = 256
CORRUPTION_PASS_IMAGES = 16_384  # corrupted images put on the device at once


class TrialFailure(RuntimeError):
    """Raised on purpose by `fail_at_epoch` (exercises the study's failure handling)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} asked for, but no CUDA device is available; use cpu or auto")
    return torch.device(name)


def robustness_metric(kernel: str, level: int) -> str:
    return f"test_acc_{kernel}_L{level}"


CORRUPTION_MEAN = "test_acc_corrupt"  # the second endpoint: mean accuracy over every corrupted copy


def corruption_metric(key: str) -> str:
    """`test_acc_corrupt_fog` (MNIST-C's one severity) or `test_acc_corrupt_fog_s3` (CIFAR-10-C)."""
    return f"{CORRUPTION_MEAN}_{key}"


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, autocast,
             batch: int | None = None) -> tuple[float, float, torch.Tensor]:
    """Mean loss, accuracy and predictions over (x, y), in eval mode (`batch`: EVAL_BATCH on a GPU,
    CPU_EVAL_BATCH on a CPU, unless given)."""
    batch = batch or (CPU_EVAL_BATCH if x.device.type == "cpu" else EVAL_BATCH)
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    predictions = []
    for start in range(0, len(x), batch):
        with autocast():
            logits = model(x[start : start + batch]).float()
        loss_sum += F.cross_entropy(logits, y[start : start + batch], reduction="sum")
        predictions.append(logits.argmax(dim=1))
    predicted = torch.cat(predictions)
    accuracy = (predicted == y).float().mean()
    return float(loss_sum) / len(x), float(accuracy), predicted


def make_optimizer(config: TrialConfig, model: nn.Module, thetas: list[torch.Tensor]) -> torch.optim.Optimizer:
    theta_ids = {id(t) for t in thetas}
    params = [p for p in model.parameters() if id(p) not in theta_ids]
    groups = [{"params": params, "weight_decay": config.weight_decay}]
    learned = [t for t in dict.fromkeys(thetas) if isinstance(t, nn.Parameter)]
    if learned:  # θ is not a weight: no decay pulling it towards ReLU, and its own smaller lr
        groups.append({"params": learned, "weight_decay": 0.0, "lr": config.lr * config.theta_lr_scale})
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    return torch.optim.AdamW(groups, lr=config.lr)


def make_lr_schedule(config: TrialConfig, optimizer, total_steps: int):
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if config.lr_schedule == "step":
        milestones = [int(total_steps * 0.5), int(total_steps * 0.75)]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of the trial: CUDA memory allocated by tensors (reset when the trial starts) on a
    GPU; on CPU the process's peak resident set size (a reused Ray actor carries its earlier peak)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def autocast_for(config: TrialConfig, device: torch.device):
    """The autocast context factory of a trial: bf16 on CUDA (or when asked for), else none."""
    if config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda"):
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def uses_channels_last(config: TrialConfig) -> bool:
    # channels_last pays on CPU too: max-pool measured ~4x faster in it (trainer.bench profile).
    return config.model != "mlp"


@dataclasses.dataclass
class Network:
    """A trial's model and the curriculum knobs the trainer turns during training."""
    net: nn.Module  # the module whose parameters are trained and checkpointed
    model: nn.Module  # what is called: `net`, or `torch.compile(net)`
    activations: Activations  # owns θ
    smoothing: Optional[Smoothing]  # owns σ (cbs only)


def build_network(config: TrialConfig, shape: tuple[int, int, int], num_classes: int,
                  device: torch.device) -> Network:
    """The model of a trial, seeded, on `device`, in the trainer's memory format."""
    channels, height, _ = shape
    torch.manual_seed(config.seed)
    mode = config.resolved_theta_schedule
    activations = Activations("relu" if mode == "constant" else "scheduled" if config.anneals else mode,
                              config.theta0)
    smoothing = Smoothing(config.smooth_kernel) if config.spec.smooths else None
    net = build_model(config.model, channels, height, num_classes, activations, width=config.width,
                      pool=config.pool, batch_norm=config.batch_norm, smoothing=smoothing).to(device)
    if uses_channels_last(config):
        net = net.to(memory_format=torch.channels_last)
    return Network(net, torch.compile(net) if config.compile else net, activations, smoothing)


def train(config: TrialConfig | dict, report: Optional[Report] = None, *,
          data: Optional[DatasetArrays] = None, resume: Optional[dict] = None,
          clock: Callable[[], float] = time.perf_counter, corrupted: Optional[CorruptedTestSet] = None) -> dict:
    """Train one trial; returns the final metrics (also passed to the last `report`).

    `clock` reads the trial's own timings (epoch_seconds, train_seconds, trial_seconds): wall time
    by default; the benchmark passes `time.process_time` to time on the CPU clock. `corrupted`: the
    dataset's corrupted test set as the driver loaded it once (`corruptions.for_dataset`); without
    it a trial that evaluates corruptions reads it from the cache (building it the first time)."""
    trial_started = clock()
    config = TrialConfig.of(config)
    report = report or (lambda metrics, state: None)
    device = resolve_device(config.device)
    use_cuda = device.type == "cuda"
    autocast = autocast_for(config, device)

    arrays = data if data is not None else load_arrays(config.dataset, config.data_dir, config.download,
                                                       config.replicate)
    if arrays.name != config.dataset:
        raise ConfigError(f"dataset: config asks for {config.dataset!r} but the data given is {arrays.name!r}")
    if arrays.replicate != config.replicate:
        raise ConfigError(f"replicate: config asks for replicate {config.replicate}'s split but the data given "
                          f"is replicate {arrays.replicate}'s")
    arrays = with_regime(arrays, config.label_noise, config.imbalance)
    _, height, width = arrays.shape
    if config.blurs:
        blurring.check_level(config.K, height, width)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    tensors: DeviceData = to_device(arrays, device, uses_channels_last(config))

    network = build_network(config, arrays.shape, arrays.num_classes, device)
    net, model, activations = network.net, network.model, network.activations
    thetas = activations.thetas()
    optimizer = make_optimizer(config, net, thetas)
    n_train = len(tensors.train_x)
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    scheduler = make_lr_schedule(config, optimizer, config.epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(config.seed)
    plan = level_plan(config)
    scheduled_theta = activations.mode == "scheduled"
    penalized = [p for p in net.parameters() if p.dim() > 1] if (config.l1 or config.l2) else []

    start_epoch = 0
    if resume is not None:
        net.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        generator.set_state(resume["generator"])
        torch.set_rng_state(resume["torch_rng"])
        start_epoch = resume["epoch"]

    def state() -> dict:
        return {"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(), "epoch": epoch, "config": config.to_dict()}

    cached_level, train_x = 1, tensors.train_x
    metrics: dict = {}
    train_seconds = 0.0
    for epoch in range(start_epoch + 1, config.epochs + 1):
        if config.fail_at_epoch == epoch:
            raise TrialFailure(f"fail_at_epoch={epoch}: failing on purpose")
        started = clock()
        level = plan[epoch - 1]
        sigma = sigma_at(config, epoch)
        if network.smoothing is not None:
            network.smoothing.set_sigma(sigma)
        if level not in (RANDOM_LEVEL, cached_level):
            # One blurred copy of the training set per level change, not one blur per batch.
            train_x = blurring.blur_in_chunks(tensors.train_x, config.kernel, level)
            cached_level = level
        if level == RANDOM_LEVEL:
            batch_levels = torch.randint(2, config.K + 1, (steps_per_epoch,), generator=generator).tolist()
            train_x = tensors.train_x
            cached_level = 1
        order = torch.randperm(n_train, generator=generator).to(device)
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for step in range(steps_per_epoch):
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            x, y = train_x[index], tensors.train_y[index]
            if level == RANDOM_LEVEL:
                x = blurring.blur(x, config.kernel, batch_levels[step])
            if scheduled_theta:
                activations.set_theta(theta_at(config, (epoch - 1) * steps_per_epoch + step, steps_per_epoch))
            with autocast():
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
            objective = loss
            if penalized:
                objective = objective + sum(config.l1 * p.abs().sum() + config.l2 * p.square().sum()
                                            for p in penalized)
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            scheduler.step()
            if not scheduled_theta and activations.layers:
                activations.clamp_()
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(dim=1) == y).sum()
        train_loss = float(loss_sum) / n_train  # the one host sync of the epoch
        train_acc = float(correct) / n_train
        if use_cuda:
            torch.cuda.synchronize(device)
        seconds = clock() - started
        train_seconds += seconds
        val_loss, val_acc, _ = evaluate(model, tensors.val_x, tensors.val_y, autocast)
        metrics = {
            "epoch": epoch,
            "blur_level": float(np.mean(batch_levels)) if level == RANDOM_LEVEL else level,
            "in_final_regime": int(config.in_final_regime(epoch)),
            **activations.summary(),
            "sigma": sigma,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "epoch_seconds": seconds,
            "samples_per_second": n_train / seconds,
        }
        diverged = not math.isfinite(train_loss)
        if diverged or epoch == config.epochs:
            metrics["train_seconds"] = train_seconds
            metrics["outcome"] = "diverged" if diverged else "completed"
            if not diverged:
                metrics.update(_final_metrics(model, tensors, config, autocast))
                if config.corruptions:  # after training and apart: the training cost is unchanged
                    started = clock()
                    metrics.update(corruption_metrics(model, corrupted or corruptions.for_dataset(arrays), arrays,
                                                      device, uses_channels_last(config), autocast))
                    metrics["corruption_seconds"] = clock() - started
            # Wall time of this call (setup, epochs, evaluation): what the study overhead is measured against.
            metrics["trial_seconds"] = clock() - trial_started
            metrics["peak_memory_mb"] = peak_memory_mb(device)
        report(metrics, state)
        if diverged:
            break
    return metrics


def macro_scores(labels: torch.Tensor, predicted: torch.Tensor, num_classes: int) -> tuple[float, float, float]:
    """Macro-averaged precision, recall and F1 over every class (a class never predicted, or never
    present, scores 0): scikit-learn's `precision_recall_fscore_support(average="macro",
    labels=range(num_classes), zero_division=0)`, which a test checks it against. Counted here
    from the confusion matrix because importing sklearn.metrics cost each trial worker 0.8 s."""
    confusion = torch.bincount(labels.long().cpu() * num_classes + predicted.long().cpu(),
                               minlength=num_classes * num_classes).view(num_classes, num_classes).double()
    hits, predicted_as, present = confusion.diagonal(), confusion.sum(dim=0), confusion.sum(dim=1)

    def ratio(top: torch.Tensor, bottom: torch.Tensor) -> float:
        return float(torch.where(bottom > 0, top / bottom.clamp(min=1), torch.zeros_like(top)).mean())

    return ratio(hits, predicted_as), ratio(hits, present), ratio(2 * hits, predicted_as + present)


def _final_metrics(model, tensors: DeviceData, config: TrialConfig, autocast) -> dict:
    test_loss, test_acc, predicted = evaluate(model, tensors.test_x, tensors.test_y, autocast)
    precision, recall, f1 = macro_scores(tensors.test_y, predicted, tensors.num_classes)
    final = {"test_loss": test_loss, "test_acc": test_acc, "test_precision_macro": precision,
             "test_recall_macro": recall, "test_f1_macro": f1}
    _, height, width = tensors.shape
    top = min(config.robustness_levels, blurring.max_level(height, width))
    for kernel in blurring.KERNELS:
        final[robustness_metric(kernel, 1)] = test_acc
        for level in range(2, top + 1):
            blurred = blurring.blur_in_chunks(tensors.test_x, kernel, level)
            final[robustness_metric(kernel, level)] = evaluate(model, blurred, tensors.test_y, autocast)[1]
    return final


def corruption_metrics(model, corrupted: CorruptedTestSet, arrays: DatasetArrays, device: torch.device,
                       channels_last: bool, autocast) -> dict:
    """Accuracy on every corrupted copy of the test split, and their mean (CORRUPTION_MEAN)."""
    index, test_y = np.asarray(corrupted.index), arrays.test_y
    from_test = len(index) and index.max() < len(test_y) and np.array_equal(corrupted.labels, test_y[index])
    if corrupted.dataset != arrays.name or not from_test:
        raise ConfigError(f"corrupted test set: built for {corrupted.dataset!r}, not from the test split of "
                          f"{arrays.name!r} given to this trial")
    keys = [variant.key for variant in corrupted.variants]
    count = len(corrupted.labels)
    labels = torch.from_numpy(np.array(corrupted.labels)).to(device)
    # Several copies per pass (per-call overhead dominated the 8×8 digits), never all at once: 75
    # CIFAR copies of 2,000 images are 1.8 GB as floats.
    per_pass = max(1, CORRUPTION_PASS_IMAGES // count)
    final = {}
    for start in range(0, len(keys), per_pass):
        group = keys[start:start + per_pass]
        images = as_tensor(np.concatenate([corrupted.images[key] for key in group]), 1 / 255, arrays, device,
                           channels_last)
        _, _, predicted = evaluate(model, images, labels.repeat(len(group)), autocast)
        correct = (predicted.view(len(group), count) == labels).float().mean(dim=1).tolist()
        final.update({corruption_metric(key): value for key, value in zip(group, correct)})
    final[CORRUPTION_MEAN] = float(np.mean(list(final.values())))
    return final


def corruption_summary(final: dict, worst: int = 3) -> str:
    """`mean 0.842 over 15 corruptions; worst: fog 0.412, canny_edges 0.605, stripe 0.701` — a
    corruption's accuracy is its mean over severities where it has several."""
    by_corruption: dict[str, list[float]] = {}
    for name, value in final.items():
        if name.startswith(CORRUPTION_MEAN + "_"):
            corruption = name.removeprefix(CORRUPTION_MEAN + "_")
            severity = corruption.rpartition("_s")
            if severity[2].isdigit():
                corruption = severity[0]
            by_corruption.setdefault(corruption, []).append(value)
    means = sorted(((float(np.mean(v)), c) for c, v in by_corruption.items()))
    severities = max(len(v) for v in by_corruption.values())
    shown = ", ".join(f"{c} {a:.3f}" for a, c in means[:worst])
    return (f"mean {final[CORRUPTION_MEAN]:.3f} over {len(means)} corruptions"
            + (f" × {severities} severities" if severities > 1 else "") + f"; worst: {shown}")


# ---------------------------------------------------------------------------------------------
# Command line: one trial, no Ray.

def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m study.train",
        description="Train one trial of the curriculum study (no Ray, Optuna or MLflow needed).")
    docs = field_docs()
    for item in dataclasses.fields(TrialConfig):
        flags = [f"--{item.name}"]
        if "_" in item.name:
            flags.insert(0, f"--{item.name.replace('_', '-')}")
        # dest is the field's name (argparse derives it from the first flag); values stay strings
        # here and are coerced, with one clear error, by TrialConfig.from_dict.
        help_text = f"{docs[item.name]} (default: {item.default!r})"
        if item.type == "bool":  # annotations are strings (from __future__ import annotations)
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=help_text)
        else:
            parser.add_argument(*flags, default=argparse.SUPPRESS, help=help_text)
    parser.add_argument("--json", action="store_true", help="print the final metrics as one JSON line")
    return parser


def format_epoch(metrics: dict, epochs: int) -> str:
    return (f"epoch {metrics['epoch']:>3}/{epochs}  level {metrics['blur_level']:<4g} "
            f"theta {metrics['theta']:.3f}  lr {metrics['lr']:.4f}  "
            f"train_loss {metrics['train_loss']:.4f} train_acc {metrics['train_acc']:.4f}  "
            f"val_loss {metrics['val_loss']:.4f} val_acc {metrics['val_acc']:.4f}  "
            f"{metrics['epoch_seconds']:.2f}s {metrics['samples_per_second']:,.0f} samples/s")


def main(argv=None) -> int:
    args = vars(build_parser().parse_args(argv))
    as_json = args.pop("json")
    try:
        config = TrialConfig.from_dict(args)
        print(f"config: {json.dumps({k: v for k, v in config.to_dict().items() if k in args}) if args else 'defaults'}",
              flush=True)
        final = train(config, lambda metrics, state: print(format_epoch(metrics, config.epochs), flush=True))
    except (ConfigError, DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    summary = [f"outcome {final['outcome']}", f"val_acc {final['val_acc']:.4f}"]
    if "test_acc" in final:
        summary += [f"test_acc {final['test_acc']:.4f}", f"test_f1_macro {final['test_f1_macro']:.4f}"]
        profile = "  ".join(f"{k}:" + ",".join(
            f"{final[robustness_metric(k, n)]:.3f}"
            for n in itertools.takewhile(lambda n: robustness_metric(k, n) in final, itertools.count(1)))
            for k in blurring.KERNELS)
        summary.append(f"train_seconds {final['train_seconds']:.2f}")
        print("final: " + "  ".join(summary))
        print(f"blur robustness (test acc at levels 1..L): {profile}")
        if CORRUPTION_MEAN in final:
            print(f"corruptions (test acc): {corruption_summary(final)}  ({final['corruption_seconds']:.2f}s)")
    else:
        print("final: " + "  ".join(summary))
    if as_json:
        print(json.dumps(final))
    return 0 if final["outcome"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
