"""`python -m study.bench --pack 1,2,4,8`: how many trials to put on one GPU.

For each N, N processes each run one whole train() trial at the same moment on the same GPU
(a barrier starts the clocks once every process has its data and its CUDA context); prints the
wall time, trials per GPU-hour and each trial's peak memory, and suggests the N with the most
trials per GPU-hour that fits in memory, i.e. the fractional GPU per trial to give Ray Tune.
CUDA only: on a CPU there is nothing to pack (the machinery itself runs on CPU for the tests).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Optional

import numpy as np
import torch

from . import blur as blurring
from .bench_tools import SYNTHETIC, BenchError, bench_arrays, machine_info, time_trial, trial_config, usable_cores
from .train import resolve_device

START_TIMEOUT = 600  # seconds for N processes to import torch, build data and start CUDA


def _worker(rank: int, dataset: str, base: dict, level: int, epochs: int, threads: int,
            ready, go, done, results) -> None:
    try:
        torch.set_num_threads(threads)
        arrays = bench_arrays(dataset)
        config = trial_config(base, level, epochs)
        device = resolve_device(config.device)
        cuda = device.type == "cuda"
        if cuda:
            torch.zeros(1, device=device)  # the CUDA context exists before the clock starts
        ready.wait(timeout=START_TIMEOUT)  # every process has its data and its context
        go.wait(timeout=START_TIMEOUT)
        started = time.time()
        seconds = time_trial(arrays, config)
        finished = time.time()
        memory = {"allocated_mb": None, "reserved_mb": None, "device_used_mb": None, "device_total_mb": None}
        if cuda:
            free, total = torch.cuda.mem_get_info(device)
            memory = {"allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20,
                      "reserved_mb": torch.cuda.max_memory_reserved(device) / 2**20,
                      "device_used_mb": (total - free) / 2**20, "device_total_mb": total / 2**20}
        done.wait()  # all still alive when the device-wide usage was read
        results.put({"rank": rank, "started": started, "finished": finished, "seconds": seconds, **memory})
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which exits non-zero
        results.put({"rank": rank, "error": f"{type(error).__name__}: {error}"})
        for barrier in (ready, go, done):
            barrier.abort()


def run_pack(counts: list[int], dataset: str, base: dict, level: int, epochs: int) -> list[dict]:
    """For each N in counts, run N whole trials concurrently (N processes) and time them."""
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    rows = []
    for count in counts:
        ready, go, done = context.Barrier(count + 1), context.Barrier(count + 1), context.Barrier(count)
        results = context.Queue()
        threads = max(1, usable_cores() // count)
        processes = [context.Process(target=_worker, args=(rank, dataset, base, level, epochs, threads,
                                                           ready, go, done, results))
                     for rank in range(count)]
        for process in processes:
            process.start()
        try:
            ready.wait(timeout=START_TIMEOUT)
            go.wait(timeout=START_TIMEOUT)
        except threading.BrokenBarrierError:  # a worker failed before the start; its error is queued
            pass
        outcomes: list[dict] = []
        while len(outcomes) < count:
            try:
                outcomes.append(results.get(timeout=5))
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in processes):  # died without reporting
                    for barrier in (ready, go, done):
                        barrier.abort()
                    if not any(p.is_alive() for p in processes):
                        break
        for process in processes:
            process.join()
        errors = [o["error"] for o in outcomes if "error" in o]
        if errors or len(outcomes) < count:
            raise BenchError(f"pack {count}: a trial process failed: "
                             f"{errors[0] if errors else f'exit codes {[p.exitcode for p in processes]}'}")

        def most(key: str) -> Optional[float]:
            values = [o[key] for o in outcomes if o[key] is not None]
            return max(values) if values else None

        wall = max(o["finished"] for o in outcomes) - min(o["started"] for o in outcomes)
        device_used = most("device_used_mb")
        rows.append({
            "trials": count, "wall_seconds": wall, "trials_per_gpu_hour": count * 3600.0 / wall,
            "trial_seconds_mean": float(np.mean([o["seconds"] for o in outcomes])),
            "per_trial_allocated_mb": most("allocated_mb"), "per_trial_reserved_mb": most("reserved_mb"),
            # device-wide usage / N: the allocator's reserve plus each process's CUDA context
            "per_trial_device_mb": device_used / count if device_used is not None else None,
            "device_total_mb": most("device_total_mb"),
        })
    return rows


def suggest_packing(rows: list[dict], headroom: float = 0.9) -> Optional[dict]:
    """The N with the most trials per GPU-hour whose memory fits, and the GPU fraction 1/N."""
    fitting = [r for r in rows if r["per_trial_device_mb"] is not None
               and r["per_trial_device_mb"] * r["trials"] <= headroom * r["device_total_mb"]]
    if not fitting:
        return None
    best = max(fitting, key=lambda r: r["trials_per_gpu_hour"])
    # How many trials of this size fit in memory at all (the bound if compute were free).
    memory_bound = int(headroom * best["device_total_mb"] // max(best["per_trial_device_mb"], 1.0))
    return {"trials": best["trials"], "gpu_fraction": 1.0 / best["trials"],
            "trials_per_gpu_hour": best["trials_per_gpu_hour"], "memory_bound_trials": memory_bound}


def pack_main(args) -> int:
    """The --pack command line (trainer.bench's parser)."""
    if args.device != "auto" and not args.device.startswith("cuda"):
        raise BenchError(f"--pack needs a CUDA device; --device {args.device} was asked for")
    if not torch.cuda.is_available():
        raise BenchError("--pack needs a CUDA device (it packs concurrent trials onto one GPU); none is available")
    try:
        counts = [int(part) for part in args.pack.split(",") if part.strip()]
    except ValueError:
        raise BenchError(f"--pack: expected comma-separated trial counts such as 1,2,4,8, got {args.pack!r}")
    if not counts or min(counts) < 1:
        raise BenchError(f"--pack: trial counts must be >= 1, got {args.pack!r}")
    dataset = args.dataset or "mnist-shaped"
    device = resolve_device("cuda" if args.device == "auto" else args.device)
    epochs = args.trial or 5
    batch_size = args.batch_size or (64 if dataset in ("digits", "mnist5k") else 128)
    base = {"dataset": SYNTHETIC[dataset][0] if dataset in SYNTHETIC else dataset, "model": args.model,
            "kernel": args.kernel, "batch_size": batch_size, "device": str(device),
            "precision": args.precision, "compile": args.compile, "seed": args.seed}
    _, height, width = SYNTHETIC[dataset][2] if dataset in SYNTHETIC else bench_arrays(dataset).shape
    blurring.check_level(args.level, height, width)
    trial_config(base, args.level, epochs)  # fail here, not in N processes
    info = machine_info(device)
    method = f"sharpening K={args.level}" if args.level > 1 else "baseline"
    print(f"trainer.bench --pack: {dataset}, {args.model}, {epochs}-epoch trials ({method}), "
          f"batch {batch_size}; {info['gpu']} ({info['gpu_memory_gb']} GB), {info['cores']} CPU cores, "
          f"torch {info['torch']}", flush=True)
    rows = run_pack(counts, dataset, base, args.level, epochs)
    print(f"{'trials':>6} {'wall s':>8} {'s/trial':>8} {'trials/GPU-hour':>16}  per-trial peak: "
          f"allocated / reserved / device (incl. CUDA context)")
    for row in rows:
        print(f"{row['trials']:>6} {row['wall_seconds']:>8.1f} {row['trial_seconds_mean']:>8.1f} "
              f"{row['trials_per_gpu_hour']:>16,.0f}  {row['per_trial_allocated_mb']:,.0f} MB / "
              f"{row['per_trial_reserved_mb']:,.0f} MB / {row['per_trial_device_mb']:,.0f} MB")
    suggestion = suggest_packing(rows)
    if suggestion:
        fraction = f"{suggestion['gpu_fraction']:.3g}"
        print(f"suggestion: {suggestion['trials']} trials per GPU, i.e. a fractional GPU of {fraction} per "
              f"trial (Ray Tune: resources {{'gpu': {fraction}}}), "
              f"{suggestion['trials_per_gpu_hour']:,.0f} trials/GPU-hour; memory alone would allow "
              f"{suggestion['memory_bound_trials']} such trials")
    else:
        print("suggestion: none of the measured packings fits in GPU memory with 10% headroom")
    if args.json:
        print(json.dumps({"dataset": dataset, "model": args.model, "epochs": epochs, **info,
                          "pack": rows, "suggestion": suggestion}))
    return 0
