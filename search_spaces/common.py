"""What every space shares: its settings, and the conditional suggestions in study order.

The order is the experiment's: `method` first, then only that method's parameters (K,
epochs_per_level and kernel for blur methods; θ schedule, anneal_epochs and θ0 for annealing
ones), then the shared optimisation parameters, so a grouped multivariate TPE learns them jointly.
Ranges are static (no range depends on another parameter), and `SpaceSettings.validate` checks
that the largest curriculum still leaves an epoch on original images: budgets never change.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from study.config import (ANNEAL_METHODS, BLUR_METHODS, DATASETS, KERNELS, METHODS, MODELS,
                          THETA_SCHEDULES, ConfigError)

ANNEAL_SCHEDULES = tuple(s for s in THETA_SCHEDULES if s != "constant")


@dataclass
class SpaceSettings:
    name: str  # the space's name (module name)
    description: str  # one line for the study's parent run and --help
    datasets: tuple[str, ...]  # one Optuna search per dataset (objectives are not comparable across datasets)
    models: dict[str, str]  # dataset → model
    epochs: int  # the equal budget of every trial, curriculum included
    num_samples: int  # search trials per dataset
    seed_repeats: int  # seeds re-run for the best config of every method after the search
    methods: tuple[str, ...] = METHODS  # methods and controls searched over
    kernels: tuple[str, ...] = KERNELS  # blur kernel families searched over
    theta_schedules: tuple[str, ...] = ANNEAL_SCHEDULES  # θ schedules searched over
    K_range: tuple[int, int] = (2, 4)  # inclusive range of blur levels K
    epochs_per_level_range: tuple[int, int] = (1, 2)  # inclusive range of epochs per level
    lr_range: tuple[float, float] = (1e-3, 0.3)  # log-uniform peak learning rate
    weight_decay_range: tuple[float, float] = (1e-6, 1e-3)  # log-uniform weight decay
    batch_sizes: tuple[int, ...] = (32, 64, 128)  # categorical batch size
    optimizers: tuple[str, ...] = ("sgd", "adamw")  # categorical optimizer
    metric: str = "val_acc"  # selection metric (validation, never test)
    mode: str = "max"
    gpus_per_trial: dict[str, float] = field(default_factory=lambda: {"small_cnn": 0.25, "mlp": 0.25, "resnet18": 1.0})
    fixed: dict = field(default_factory=dict)  # TrialConfig fields fixed for every trial

    def replace(self, **changes) -> "SpaceSettings":
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        def subset(name, values, allowed):
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise ConfigError(f"{name}: {bad or 'nothing'} is not allowed; choose from {list(allowed)}")

        subset("methods", self.methods, METHODS)
        subset("kernels", self.kernels, KERNELS)
        subset("datasets", self.datasets, DATASETS)
        subset("theta_schedules", self.theta_schedules, ANNEAL_SCHEDULES)
        subset("models", tuple(self.models[d] for d in self.datasets if d in self.models), MODELS)
        missing = [d for d in self.datasets if d not in self.models]
        if missing:
            raise ConfigError(f"models: no model set for dataset(s) {missing}")
        for name in ("num_samples", "epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.seed_repeats < 0:
            raise ConfigError(f"seed_repeats: must be >= 0, got {self.seed_repeats}")
        longest = (self.K_range[1] - 1) * self.epochs_per_level_range[1]
        curricular = any(m in BLUR_METHODS or m in ANNEAL_METHODS for m in self.methods)
        if curricular and longest >= self.epochs:
            raise ConfigError(
                f"epochs: the space's longest curriculum, (K-1)*epochs_per_level = "
                f"({self.K_range[1]}-1)*{self.epochs_per_level_range[1]} = {longest} epochs, leaves no "
                f"epoch on original images within epochs={self.epochs}; need epochs >= {longest + 1}")


@dataclass
class Space:
    settings: SpaceSettings
    define: Callable  # define(trial, dataset, settings) -> dict of constants
    source: Path  # the module file, logged as an artifact of the study


def suggest_method(trial, settings: SpaceSettings) -> dict:
    """`method`, then only that method's parameters."""
    method = trial.suggest_categorical("method", list(settings.methods))
    schedule = None
    if method in ANNEAL_METHODS:
        schedule = trial.suggest_categorical("theta_schedule", list(settings.theta_schedules))
        if schedule in ("linear", "cosine"):
            trial.suggest_int("anneal_epochs", 1, settings.epochs - 1)
        # θ0: where a scheduled θ starts, or where a learned θ is initialised (at π/4 exactly a
        # learned θ sits on the kink of max(x·tanθ, x) and may never leave the linear network).
        trial.suggest_float("theta0", 0.2, 0.7853981633974483)
    if method in BLUR_METHODS or schedule == "step":
        trial.suggest_int("K", *settings.K_range)
        trial.suggest_int("epochs_per_level", *settings.epochs_per_level_range)
    if method in BLUR_METHODS:
        trial.suggest_categorical("kernel", list(settings.kernels))
    return {"method": method}


def suggest_shared(trial, settings: SpaceSettings) -> None:
    """Parameters every method shares, sampled after the method's own."""
    trial.suggest_categorical("optimizer", list(settings.optimizers))
    trial.suggest_float("lr", *settings.lr_range, log=True)
    trial.suggest_float("weight_decay", *settings.weight_decay_range, log=True)
    trial.suggest_categorical("batch_size", list(settings.batch_sizes))


def constants(dataset: str, settings: SpaceSettings) -> dict:
    """What a trial of this space never searches over."""
    return {"dataset": dataset, "model": settings.models[dataset], "epochs": settings.epochs,
            **settings.fixed}
