"""What every space shares: its settings, and the one define-by-run function.

A space is an experiment card: a `SETTINGS` (datasets and models, the epoch budget, trials per
method, seed repeats, ranges). Each (dataset, method) gets its own Optuna study; `define`
suggests exactly the fields `TrialConfig.own_fields()` says the method uses — in that order, so
a learned or annealed θ's schedule is known before what depends on it — then the shared
optimisation parameters, so a grouped multivariate TPE learns them jointly. Ranges are static,
and `SpaceSettings.validate` checks every method's longest curriculum against the budget with
the trainer's own rule: budgets never change silently.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from trainer.config import (ANNEAL_SCHEDULES, CONTROL_MIN_K, DATASET_SIDES, DATASETS, KERNELS,
                          LEARNED_SCHEDULES, METHOD_TABLE, METHODS, MODELS, SHARED, THETA_MAX, ConfigError,
                          TrialConfig, max_level)


@dataclass(frozen=True)
class Regime:
    """A setting the whole fair comparison is run in; it changes the training split or the budget only."""
    name: str = "standard"  # tags every run of the regime (`regime`), and names its Optuna studies
    label_noise: float = 0.0  # fraction of training labels replaced (symmetric), fixed per dataset
    imbalance: float = 1.0  # ρ = n_max / n_min of a long-tailed training split
    epochs: int | None = None  # the regime's epoch budget (e.g. a short one); None = the space's


STANDARD = Regime()


@dataclass
class SpaceSettings:
    name: str  # the space's name (module name)
    description: str  # one line for the study's parent run and --help
    datasets: tuple[str, ...]  # one study per dataset (objectives are not comparable across datasets)
    models: dict[str, str]  # dataset → model
    epochs: int  # the equal budget of every trial, curriculum included
    num_samples: int  # search trials per method (the same for every searched method)
    seed_repeats: int  # fresh seeds re-run for every method's best config, its controls and matched baseline
    methods: tuple[str, ...] = METHODS  # methods searched, and controls re-run from sharpening's best
    kernels: tuple[str, ...] = KERNELS  # blur kernel families searched over
    anneal_schedules: tuple[str, ...] = ANNEAL_SCHEDULES  # annealing/combined θ schedules searched over
    learned_schedules: tuple[str, ...] = LEARNED_SCHEDULES  # learned_theta: one shared θ or one per channel
    K_range: tuple[int, int] = (4, 4)  # inclusive range of blur levels K (controls need K ≥ 4)
    epochs_per_level_range: tuple[int, int] = (1, 2)  # inclusive range of epochs per level
    theta0_range: tuple[float, float] = (0.2, THETA_MAX)  # learned_theta: initial θ
    theta_lr_scale_range: tuple[float, float] = (0.01, 1.0)  # learned_theta: log-uniform θ lr / lr
    sigma0_range: tuple[float, float] = (0.5, 2.0)  # cbs: first-epoch σ (authors' default 1)
    sigma_decay_range: tuple[float, float] = (0.5, 0.95)  # cbs: decay factor (authors' default 0.9)
    decay_every_range: tuple[int, int] = (1, 2)  # cbs: epochs between decays (authors' 5, at 200 epochs)
    smooth_kernels: tuple[int, ...] = (3,)  # cbs: Gaussian kernel side (authors' default 3)
    lr_range: tuple[float, float] = (1e-3, 0.3)  # log-uniform peak learning rate
    weight_decay_range: tuple[float, float] = (1e-6, 1e-3)  # log-uniform weight decay
    batch_sizes: tuple[int, ...] = (32, 64, 128)  # categorical batch size
    optimizers: tuple[str, ...] = ("sgd", "adamw")  # categorical optimizer
    metric: str = "val_acc"  # selection metric, maximised (validation, never test)
    gpus_per_trial: dict[str, float] = field(default_factory=lambda: {"small_cnn": 0.25, "mlp": 0.25, "resnet18": 1.0})
    fixed: dict = field(default_factory=dict)  # TrialConfig fields fixed for every trial
    regimes: tuple[Regime, ...] = (STANDARD,)  # the fair comparison runs once per (dataset, regime)
    replicates: int = 1  # whole-pipeline replicates: each redraws the split, noise draws, sampler and training seeds
    select_top: int = 3  # each method's top configs by search val_acc re-run before choosing (1 = choose on the search)
    select_seeds: int = 3  # fresh seeds per top config; the choice is by mean val_acc over them (0 = choose on the search)
    crossed: bool = True  # also re-run each curriculum at the baseline's chosen shared hyperparameters
    auto_seeds: bool = False  # --seeds auto: seed_repeats seeds first, then batches of seed_repeats more
    #                           while a comparison is open, up to max_seeds (study.sequential)
    max_seeds: int = 30  # the cap of auto_seeds: test seeds per side at the last look

    def __post_init__(self):  # a study record stores regimes as plain dicts
        self.regimes = tuple(Regime(**r) if isinstance(r, dict) else r for r in self.regimes)

    def for_regime(self, regime: Regime) -> "SpaceSettings":
        """These settings as one regime trains them: its budget, its training-split fields fixed."""
        return self.replace(epochs=regime.epochs or self.epochs,
                            fixed={**self.fixed, "label_noise": regime.label_noise, "imbalance": regime.imbalance})

    def replace(self, **changes) -> "SpaceSettings":
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        def subset(name, values, allowed):
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise ConfigError(f"{name}: {', '.join(map(str, bad)) or 'an empty list'} is not allowed; "
                                  f"choose from {', '.join(allowed)}")

        subset("methods", self.methods, METHODS)
        subset("kernels", self.kernels, KERNELS)
        subset("datasets", self.datasets, DATASETS)
        subset("anneal_schedules", self.anneal_schedules, ANNEAL_SCHEDULES)
        subset("learned_schedules", self.learned_schedules, LEARNED_SCHEDULES)
        missing = [d for d in self.datasets if d not in self.models]
        if missing:
            raise ConfigError(f"datasets: space {self.name!r} has no model for {', '.join(missing)}; it covers "
                              f"{', '.join(self.models)} (pick from those, or use a space that covers it)")
        subset("models", tuple(self.models[d] for d in self.datasets), MODELS)
        for name in ("num_samples", "epochs", "replicates", "select_top"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("seed_repeats", "select_seeds"):  # seeds per replicate: see study.search.replicate_seeds
            if not 0 <= getattr(self, name) <= SEEDS_PER_KIND:
                raise ConfigError(f"{name}: must be in 0..{SEEDS_PER_KIND}, got {getattr(self, name)}")
        if self.auto_seeds:  # looks at seed_repeats, 2·seed_repeats, ..., max_seeds (study.sequential)
            if self.seed_repeats < 2:
                raise ConfigError(f"seed_repeats: the first batch of auto seeds needs at least 2 seeds a side "
                                  f"(a t-test's spread), got {self.seed_repeats}")
            if not self.seed_repeats < self.max_seeds <= SEEDS_PER_KIND:
                raise ConfigError(f"max_seeds: must be above the first batch ({self.seed_repeats} seeds: "
                                  f"seed_repeats) and at most {SEEDS_PER_KIND}, got {self.max_seeds}")
        controls = [m for m in self.methods if METHOD_TABLE[m].matched_to]
        for control in controls:
            if METHOD_TABLE[control].matched_to not in self.methods:
                raise ConfigError(f"methods: control {control!r} re-runs {METHOD_TABLE[control].matched_to!r}'s "
                                  f"best config, so it needs {METHOD_TABLE[control].matched_to!r} in the methods too")
        if controls and self.K_range[0] < CONTROL_MIN_K:
            raise ConfigError(f"K_range: controls ({', '.join(controls)}) need K >= {CONTROL_MIN_K} (at K <= 3 "
                              f"the orderings coincide), got K_range={self.K_range}")
        for dataset in self.datasets:
            top = max_level(DATASET_SIDES[dataset], DATASET_SIDES[dataset])
            if any(METHOD_TABLE[m].blurs for m in self.methods) and self.K_range[1] > top:
                raise ConfigError(f"K_range: {dataset} allows levels up to {top}, got K_range={self.K_range}")
        names = [r.name for r in self.regimes]
        if not self.regimes or len(set(names)) != len(names):
            raise ConfigError(f"regimes: need at least one, with distinct names, got {names}")
        for regime in self.regimes:
            try:
                self.for_regime(regime)._validate_budget()
            except ConfigError as error:
                if regime.name == "standard":
                    raise
                raise ConfigError(f"{error} (regime {regime.name!r})") from None

    def longest_configs(self):
        """Per method (and θ schedule), the trial config with the longest curriculum this space can
        draw: the largest K and epochs per level, annealing and smoothing over epochs − 1."""
        for method in self.methods:
            spec = METHOD_TABLE[method]
            base = {"method": method, "epochs": self.epochs, "K": self.K_range[1],
                    "epochs_per_level": self.epochs_per_level_range[1], "dataset": self.datasets[0],
                    **{k: v for k, v in self.fixed.items() if k in ("label_noise", "imbalance")}}
            if spec.smooths:
                base["smooth_epochs"] = self.epochs - 1
            schedules = self.anneal_schedules if spec.anneals else self.learned_schedules if spec.learns_theta else ()
            for schedule in schedules or (None,):
                config = dict(base)
                if schedule is not None:
                    config["theta_schedule"] = schedule
                if spec.anneals and schedule in ("linear", "cosine"):
                    config["anneal_epochs"] = self.epochs - 1
                yield TrialConfig.from_dict(config)  # refuses a curriculum that does not fit the budget

    def _validate_budget(self) -> None:
        for _ in self.longest_configs():  # every method's longest curriculum, by the trainer's own rule
            pass

    @property
    def longest_curriculum(self) -> int:
        """Epochs before the final regime of the longest curriculum any trial of this space can have
        (`TrialConfig.curriculum_epochs`, the budget rule's one home)."""
        return max(config.curriculum_epochs for config in self.longest_configs())


SEEDS_PER_KIND = 499  # test seeds and selection seeds each have this many per replicate (study.search)


@dataclass
class Space:
    settings: SpaceSettings
    define: Callable  # define(trial, dataset, method, settings) -> dict of constants
    source: Path  # the module file, logged as an artifact of the study


def _suggest(trial, name: str, config: TrialConfig, settings: SpaceSettings):
    """One method-specific field; None = fixed by the method's definition (annealing's θ0 = π/4)."""
    if name == "theta_schedule":
        return trial.suggest_categorical(name, list(settings.anneal_schedules if config.anneals
                                                    else settings.learned_schedules))
    if name == "theta0":
        return trial.suggest_float(name, *settings.theta0_range) if config.spec.learns_theta else None
    if name == "kernel":
        return trial.suggest_categorical(name, list(settings.kernels))
    if name == "smooth_kernel":
        return trial.suggest_categorical(name, list(settings.smooth_kernels))
    if name in ("anneal_epochs", "smooth_epochs"):
        return trial.suggest_int(name, 1, settings.epochs - 1)
    ranges = {"K": settings.K_range, "epochs_per_level": settings.epochs_per_level_range,
              "decay_every": settings.decay_every_range, "sigma0": settings.sigma0_range,
              "sigma_decay": settings.sigma_decay_range}
    if name == "theta_lr_scale":
        return trial.suggest_float(name, *settings.theta_lr_scale_range, log=True)
    low, high = ranges[name]
    return trial.suggest_int(name, low, high) if isinstance(low, int) else trial.suggest_float(name, low, high)


def define(trial, dataset: str, method: str, settings: SpaceSettings) -> dict:
    """The method's own fields, then the shared ones; returns the constants of the trial."""
    fixed = {"method": method, "dataset": dataset, "model": settings.models[dataset],
             "epochs": settings.epochs, **settings.fixed}
    values, asked = dict(fixed), set()
    while True:  # own_fields() depends on what is already chosen (the θ schedule decides the rest)
        pending = [n for n in TrialConfig(**values).own_fields() if n not in asked]
        if not pending:
            break
        asked.add(pending[0])
        value = _suggest(trial, pending[0], TrialConfig(**values), settings)
        if value is not None:
            values[pending[0]] = value
    for name in SHARED:
        _suggest_shared(trial, name, settings)
    return fixed


class SharedDraws:
    """Common random numbers: draw i of the shared hyperparameters (`trainer.config.SHARED`), the
    same for trial i of every method. One seeded random stream (Optuna's RandomSampler over the
    same distributions `_suggest_shared` defines), so the draws are independent of each other and
    of the methods — what a random search's tuning-curve bands assume — and draw i is the same
    whenever it is asked for (a resumed study redraws the stream from its seed)."""

    def __init__(self, settings: SpaceSettings, seed: int):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.settings = settings
        self.study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))  # in memory
        self.draws: list[dict] = []

    def __call__(self, index: int) -> dict:
        while len(self.draws) <= index:
            trial = self.study.ask()
            for name in SHARED:
                _suggest_shared(trial, name, self.settings)
            self.draws.append(dict(trial.params))
            self.study.tell(trial, 0.0)
        return dict(self.draws[index])


def _suggest_shared(trial, name: str, settings: SpaceSettings):
    """One of the hyperparameters every method shares (`trainer.config.SHARED`)."""
    if name == "optimizer":
        return trial.suggest_categorical(name, list(settings.optimizers))
    if name == "batch_size":
        return trial.suggest_categorical(name, list(settings.batch_sizes))
    low, high = {"lr": settings.lr_range, "weight_decay": settings.weight_decay_range}[name]
    return trial.suggest_float(name, low, high, log=True)
