"""What every benchmark of the trainer shares: the data it times on, the machine it ran on, one
whole trial timed end to end. `trainer.bench` (the trainer against a DataLoader reference, every
method's cost) and `trainer.bench_pack` (trials per GPU) both import it; neither imports the other
back.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import resource
import time
from typing import Optional

import numpy as np
import torch

from .config import TrialConfig
from .data import VAL_FRACTION, DatasetArrays, DeviceData, load_arrays, to_device
from .train import resolve_device, train, uses_channels_last


WARMUP_EPOCHS = 1  # not timed: first-touch allocations, cuDNN autotuning, lazy init, the blur


SYNTHETIC = {  # --dataset: (the dataset name train() sees, train+val images, shape, test images)
    "mnist-shaped": ("mnist", 60000, (1, 28, 28), 10000),
    "cifar-shaped": ("cifar10", 50000, (3, 32, 32), 10000),
}


DATASETS = ("digits", "mnist5k", *SYNTHETIC)


SPLITS = ("train", "val", "test")


class BenchError(RuntimeError):
    """A benchmark that cannot run as asked; the message says why."""


def synthetic_arrays(kind: str, seed: int = 0) -> DatasetArrays:
    """Random uint8 images shaped like MNIST or CIFAR-10, split as load_arrays splits the real ones."""
    name, n_train_val, shape, n_test = SYNTHETIC[kind]
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n_train_val + n_test, *shape), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n_train_val + n_test).astype(np.int64)
    n_train = n_train_val - int(round(n_train_val * VAL_FRACTION))
    sample = images[:4096].astype(np.float64) / 255.0  # statistics of a sample: random pixels
    mean = sample.mean(axis=(0, 2, 3)).astype(np.float32)
    std = np.maximum(sample.std(axis=(0, 2, 3)), 1e-6).astype(np.float32)
    return DatasetArrays(name, images[:n_train], labels[:n_train], images[n_train:n_train_val],
                         labels[n_train:n_train_val], images[n_train_val:], labels[n_train_val:],
                         10, 1.0 / 255.0, mean, std)


def bench_arrays(kind: str, limit: int = 0) -> DatasetArrays:
    arrays = synthetic_arrays(kind) if kind in SYNTHETIC else load_arrays(kind)
    return first(arrays, limit) if limit else arrays


def first(arrays: DatasetArrays, n: int) -> DatasetArrays:
    """The first n images of every split."""
    return dataclasses.replace(arrays, **{f"{split}_{part}": getattr(arrays, f"{split}_{part}")[:n]
                                          for split in SPLITS for part in "xy"})


def resident(arrays: DatasetArrays, config: TrialConfig) -> DeviceData:
    """The data as train() holds it: normalised, on its device, in its memory format."""
    return to_device(arrays, resolve_device(config.device), uses_channels_last(config))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def trial_config(base: dict, level: int, epochs: int) -> TrialConfig:
    """A whole trial for --trial and --pack: sharpening from `level` (K = level), or baseline at level 1."""
    settings = {"method": "sharpening", "K": level, "epochs_per_level": 1} if level > 1 else {"method": "baseline"}
    return TrialConfig.from_dict({**base, **settings, "epochs": epochs})


def time_trial(arrays: DatasetArrays, config: TrialConfig) -> float:
    """Wall seconds of one whole train() trial: data to the device, model, epochs, validation, final
    test and robustness evaluation (reading the dataset from disk excluded)."""
    device = resolve_device(config.device)
    sync(device)
    started = time.perf_counter()
    train(config, data=arrays)
    sync(device)
    return time.perf_counter() - started


class PeakMemory:
    """Peak memory of one side. CUDA: torch.cuda.max_memory_allocated (reset between sides). CPU: the
    process peak RSS (VmHWM, reset between sides through /proc/self/clear_refs where Linux allows;
    otherwise ru_maxrss, the peak of the whole process so far)."""

    def __init__(self, device: torch.device):
        self.device, self.baseline_mb = device, 0.0
        self.resettable = device.type != "cuda" and self._clear_refs()
        self.kind = ("CUDA max_memory_allocated" if device.type == "cuda" else
                     "process peak RSS" + ("" if self.resettable else " since start (ru_maxrss)"))

    @staticmethod
    def _clear_refs() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            return _status_kb("VmHWM:") is not None
        except OSError:
            return False

    def reset(self) -> None:
        """Start a new peak; `baseline_mb` is what was in use at that moment (imports, the other side's leftovers)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_mb = torch.cuda.memory_allocated(self.device) / 2**20
            return
        if self.resettable:
            self._clear_refs()
        self.baseline_mb = (_status_kb("VmRSS:") or 0) / 1024

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        hwm = _status_kb("VmHWM:") if self.resettable else None
        return (hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def _status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_info(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"device": str(device), "cpu": cpu, "cores": usable_cores(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
    return info


def print_machine(device: torch.device, info: dict) -> None:
    hardware = f"GPU {info['gpu']} ({info['gpu_memory_gb']} GB), CUDA {info['cuda']}; " if "gpu" in info else ""
    print(f"device {device}: {hardware}CPU {info['cpu']}, {info['cores']} cores; torch {info['torch']}, "
          f"{info['threads']} threads; python {info['python']}; load average {info['load_average']}", flush=True)
    if info["load_average"] is not None and info["load_average"] >= 0.5 * info["cores"]:
        # Measured on a shared 2-core VM: with other processes running, 2-thread CPU kernels on
        # these tiny tensors ran 10-100x slower than 1-thread ones (OpenMP threads wait on
        # descheduled peers); single-threaded runs stayed within ~1.5x of an idle machine.
        print(f"warning: other processes are using the CPUs (load {info['load_average']} on {info['cores']} "
              f"cores): figures are noisy; multi-threaded CPU kernels suffer most (try --threads 1; with "
              f"--methods, also --clock cpu)", flush=True)
