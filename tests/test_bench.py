"""`python -m study.bench`: runs, reports both sides, measures the trainer itself. No wall-clock assertions."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from trainer import bench, bench_pack, bench_tools
from trainer import blur as blurring
from trainer.data import DatasetArrays, to_device
from trainer.config import METHODS


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer.bench", *args], capture_output=True, text=True,
                          timeout=600)


def test_digits_one_epoch_reports_both_sides_and_their_ratio():
    result = run_bench("--epochs", "1", "--device", "cpu", "--threads", "1", "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    assert figures["reference_samples_per_s"] > 0
    assert figures["trainer_samples_per_s"] > 0
    assert figures["speedup"] == pytest.approx(
        figures["trainer_samples_per_s"] / figures["reference_samples_per_s"], rel=1e-6)
    assert figures["reference_peak_mb"] > 0 and figures["trainer_peak_mb"] > 0
    assert figures["samples_per_epoch"] == 1295 and figures["num_workers"] == 0
    speedup_lines = [line for line in lines if re.match(r"speedup \d+\.\dx", line)]
    assert len(speedup_lines) == 1
    assert speedup_lines[0].split()[1] == f"{figures['speedup']:.1f}x"
    assert any(line.startswith("reference  (DataLoader, per-sample blur, workers=0)") for line in lines)
    assert any(line.startswith("trainer    (resident tensors, index slices)") for line in lines)
    assert "torch " + torch.__version__ in result.stdout


def test_pack_needs_cuda_and_says_so_in_one_line(capsys):
    assert bench.main(["--pack", "1,2", "--device", "cpu"]) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        "error: --pack needs a CUDA device; --device cpu was asked for"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU --pack runs")
def test_pack_without_any_gpu_fails_clearly(capsys):
    assert bench.main(["--pack", "1"]) != 0
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --pack needs a CUDA device (it packs concurrent trials onto one GPU); none is available"]


def test_a_level_too_large_for_the_images_is_a_clear_error(capsys):
    assert bench.main(["--level", "5", "--epochs", "1", "--device", "cpu"]) == 2
    assert "blur level 5 is not allowed for 8x8 images" in capsys.readouterr().err


def test_the_reference_transform_computes_what_the_trainer_trains_on():
    arrays = bench_tools.bench_arrays("digits")
    dataset = bench.reference_dataset(arrays, "box", 3)
    resident = blurring.blur_in_chunks(to_device(arrays, torch.device("cpu")).train_x, "box", 3)
    assert len(dataset) == len(resident)
    for index in (0, 7, len(dataset) - 1):
        image, label = dataset[index]
        assert image.shape == resident[index].shape
        torch.testing.assert_close(image, resident[index], rtol=1e-5, atol=1e-5)
        assert label == int(arrays.train_y[index])


@pytest.mark.parametrize("level", [1, 2, 3])
def test_the_trainer_config_trains_only_at_the_asked_level_for_the_timed_block(level):
    from trainer.schedules import level_plan

    config, block = bench.constant_level_config({"dataset": "digits", "device": "cpu"}, level, epochs=3)
    assert block == bench_tools.WARMUP_EPOCHS + 3
    assert level_plan(config)[:block] == [level] * block
    assert config.epochs > block  # the final test/robustness evaluation stays out of the run


def test_synthetic_shapes_match_the_real_datasets():
    arrays = bench_tools.synthetic_arrays("mnist-shaped")
    assert arrays.name == "mnist" and arrays.shape == (1, 28, 28)
    assert (len(arrays.train_x), len(arrays.val_x), len(arrays.test_x)) == (54000, 6000, 10000)
    assert arrays.train_x.dtype == np.uint8 and arrays.scale == pytest.approx(1 / 255)


def test_packing_suggestion_takes_the_fastest_packing_that_fits():
    rows = [{"trials": n, "trials_per_gpu_hour": rate, "per_trial_device_mb": 600.0, "device_total_mb": 2000.0}
            for n, rate in ((1, 700.0), (2, 1300.0), (4, 2000.0))]
    suggestion = bench_pack.suggest_packing(rows)  # 4 x 600 MB does not fit in 90% of 2000 MB
    assert suggestion["trials"] == 2 and suggestion["gpu_fraction"] == 0.5
    assert suggestion["memory_bound_trials"] == 3
    assert bench_pack.suggest_packing([dict(rows[0], per_trial_device_mb=None)]) is None


@pytest.mark.slow
def test_pack_machinery_runs_concurrent_trials_in_processes():
    # The CLI packs on CUDA only; on CPU this exercises the spawn, barrier and result plumbing.
    rows = bench_pack.run_pack([2], "digits", {"dataset": "digits", "device": "cpu"}, level=1, epochs=1)
    assert len(rows) == 1 and rows[0]["trials"] == 2
    assert rows[0]["wall_seconds"] > 0 and rows[0]["trials_per_gpu_hour"] > 0
    assert rows[0]["per_trial_device_mb"] is None  # no CUDA memory figures without CUDA


def test_the_reference_trains_the_trainers_network_from_the_same_weights(monkeypatch):
    from trainer.train import build_network, train

    arrays = bench_tools.bench_arrays("digits")
    config, _ = bench.constant_level_config({"dataset": "digits", "device": "cpu"}, 2, epochs=1)
    # An lr so small that one epoch leaves the weights where they started (to float precision).
    still = config.from_dict({**config.to_dict(), "lr": 1e-12, "weight_decay": 0.0})
    captured = {}

    def report(metrics, state):
        captured.update({k: v.clone() for k, v in state()["model"].items()})
        raise bench._Stop

    with pytest.raises(bench._Stop):
        train(still, report, data=arrays)
    built = []
    monkeypatch.setattr(bench, "build_network", lambda *a: built.append(build_network(*a)) or built[-1])
    figures = bench.time_reference(arrays, still, level=2, epochs=1, num_workers=0)
    assert figures["samples_per_epoch"] == len(arrays.train_x) and len(figures["epoch_seconds"]) == 1
    assert len(built) == 1  # the reference trains what train() builds, not a copy of it
    net = built[0].net
    convs = [p for name, p in net.named_parameters() if p.dim() == 4 and p.shape[1] > 1]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    reference = net.state_dict()
    assert list(reference) == list(captured)
    for name, tensor in reference.items():
        assert tensor.shape == captured[name].shape
        if tensor.is_floating_point() and "running" not in name:  # BN running stats move with data
            torch.testing.assert_close(tensor, captured[name], rtol=0, atol=1e-6)


@pytest.mark.parametrize("model, channels_last", [("small_cnn", True), ("resnet18", True), ("mlp", False)])
def test_resident_data_and_its_blur_are_in_the_trainers_memory_format_on_cpu(model, channels_last):
    # The drift this guards against: the bench used channels_last only on CUDA, train() on every device.
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (8, 3, 32, 32), dtype=np.uint8), np.arange(8) % 10
    arrays = DatasetArrays("cifar10", x, y, x, y, x, y, 10, 1 / 255, np.full(3, 0.5, np.float32),
                           np.full(3, 0.25, np.float32))
    config = bench.TrialConfig.from_dict({"dataset": "cifar10", "model": model, "device": "cpu"})
    images = bench_tools.resident(arrays, config).train_x
    assert images.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert images.is_contiguous() != channels_last  # 3 channels: the two formats differ
    assert blurring.blur(images, "box", 2).is_contiguous(memory_format=torch.channels_last) == channels_last


def test_method_configs_differ_only_in_the_method_and_end_on_plain_training():
    configs, skipped = bench.method_configs({"dataset": "digits", "device": "cpu"}, epochs=3, side=8)
    assert list(configs) == list(METHODS) and skipped == {}
    shared = {k: v for k, v in configs["baseline"].to_dict().items() if k != "method"}
    for method, config in configs.items():
        assert config.method == method and config.epochs == 6
        assert {k: v for k, v in config.to_dict().items() if k != "method"} == shared
        assert config.curriculum_epochs <= 3 and all(config.in_final_regime(e) for e in (4, 5, 6))
    assert configs["sharpening"].K == 4 and configs["sharpening"].curriculum_epochs == 3
    assert configs["annealing"].resolved_anneal_epochs == 3 and configs["cbs"].resolved_smooth_epochs == 3
    one, _ = bench.method_configs({"dataset": "digits", "device": "cpu"}, epochs=1, side=8)
    assert one["sharpening"].K == 2 and one["sharpening"].epochs == 2
    mlp, skipped = bench.method_configs({"dataset": "digits", "device": "cpu", "model": "mlp"}, epochs=3, side=8)
    assert "cbs" not in mlp and "cbs" in skipped and set(mlp) | set(skipped) == set(METHODS)


def test_methods_one_epoch_prints_a_row_per_method_with_a_ratio_column():
    result = run_bench("--methods", "--epochs", "1", "--device", "cpu", "--threads", "1", "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    assert list(figures["methods"]) == list(METHODS)
    assert figures["trial_epochs"] == 2 and figures["runs"] == 3
    header = next(i for i, line in enumerate(lines) if line.startswith("method "))
    assert "ratio" in lines[header]
    rows = lines[header + 1 : header + 1 + len(METHODS)]
    ratio = re.compile(r"\d+\.\d\dx \(\d+\.\d\d-\d+\.\d\d\)")
    for method, line in zip(METHODS, rows):
        assert line.split()[0] == method
        assert len(ratio.findall(line)) == 2, line  # per epoch and over the trial
        row = figures["methods"][method]
        assert row["epoch_seconds"]["median"] > 0 and len(row["epoch_ratio"]["runs"]) == 3
        assert f"{row['epoch_ratio']['median']:.2f}x" in line and f"{row['trial_ratio']['median']:.2f}x" in line
    assert figures["methods"]["baseline"]["epoch_ratio"]["median"] == 1.0
    assert "over the trial" in rows[list(METHODS).index("cbs")]
    assert "per epoch" in rows[list(METHODS).index("sharpening")]
    assert any(line.startswith("blur_aug blurs every batch: ") for line in lines)


def test_methods_and_trial_are_one_or_the_other(capsys):
    assert bench.main(["--methods", "--trial", "3", "--device", "cpu"]) == 2
    assert "--methods times whole trials already" in capsys.readouterr().err


def test_the_cpu_clock_is_passed_to_train_and_reads_its_own_timing():
    import time

    reads = []

    def counting_clock():  # a clock the test controls: every timing train() reports comes from it
        reads.append(time.process_time())
        return float(len(reads))

    assert bench.CLOCKS == {"wall": time.perf_counter, "cpu": time.process_time}
    records = bench.train_epochs(bench.TrialConfig.from_dict({"dataset": "digits", "device": "cpu", "epochs": 2}),
                                 bench_tools.bench_arrays("digits", 200), clock=counting_clock)
    assert [m["epoch"] for m in records] == [1, 2]
    # Each epoch reads the clock twice: epoch_seconds is a whole number of ticks of this clock.
    assert all(m["epoch_seconds"] >= 1 and float(m["epoch_seconds"]).is_integer() for m in records)
    assert records[-1]["train_seconds"] == sum(m["epoch_seconds"] for m in records)
