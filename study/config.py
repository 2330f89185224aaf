"""The one config type of a trial.

Search spaces produce plain dicts; `TrialConfig.from_dict` turns them into this dataclass or
fails with a `ConfigError` naming the field and the allowed values. The CLI flags of
`python -m study.train` are generated from these fields, so every name here is also a flag.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass

METHODS = ("baseline", "sharpening", "anti", "random_order", "blur_aug", "annealing", "combined")
# Methods whose training images follow a blur-level plan (the curriculum and its controls).
BLUR_METHODS = ("sharpening", "anti", "random_order", "blur_aug", "combined")
# Methods whose activations are annealed from linear (θ0) to ReLU (0).
ANNEAL_METHODS = ("annealing", "combined")
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10")
MODELS = ("small_cnn", "mlp", "resnet18")
KERNELS = ("box", "gaussian", "downsample")
THETA_SCHEDULES = ("constant", "linear", "cosine", "step", "trainable", "trainable_channel")
OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("constant", "cosine", "step")
PRECISIONS = ("auto", "fp32", "bf16")


class ConfigError(ValueError):
    """A trial config that cannot run; the message names the field and what is allowed."""


@dataclass
class TrialConfig:
    # --- what is studied ---
    method: str = "baseline"  # one of METHODS; controls are anti, random_order and blur_aug
    dataset: str = "digits"  # one of DATASETS; digits is offline (scikit-learn), the rest are torchvision
    data_dir: str = "data"  # torchvision datasets live here (digits ignores it)
    download: bool = False  # let torchvision download missing files (needs network)
    model: str = "small_cnn"  # one of MODELS
    width: int = 16  # filters per conv (small_cnn) or hidden units / 16 (mlp); resnet18 ignores it
    pool: bool = True  # small_cnn: 2x2 max-pool after the 2nd and 3rd convolution
    batch_norm: bool = True  # small_cnn: BatchNorm after every convolution (the reference has none)

    # --- progressive sharpening (methods in BLUR_METHODS; `step` θ also uses K and epochs_per_level) ---
    K: int = 3  # number of blur levels; level 1 is the original image, level K the most blurred
    epochs_per_level: int = 1  # epochs on each of the levels K..2 before the originals
    kernel: str = "box"  # low-pass kernel family, one of KERNELS (variance-matched across families)

    # --- convexity annealing (methods in ANNEAL_METHODS) ---
    theta_schedule: str = ""  # one of THETA_SCHEDULES; "" = constant for plain methods, linear for annealing ones
    theta0: float = math.pi / 4  # starting θ (π/4 = linear network); also the init of trainable θ
    anneal_epochs: int = 0  # linear/cosine: epochs over which θ falls to 0; 0 = epochs - 1

    # --- optimisation (shared by every method; equal budget) ---
    epochs: int = 10  # total epochs of the trial, curriculum included
    batch_size: int = 64  # training batch size
    optimizer: str = "sgd"  # one of OPTIMIZERS (sgd uses Nesterov momentum)
    lr: float = 0.05  # peak learning rate
    momentum: float = 0.9  # SGD momentum
    lr_schedule: str = "cosine"  # one of LR_SCHEDULES, stepped every batch
    weight_decay: float = 5e-4  # decoupled (adamw) or L2-in-gradient (sgd, adam) weight decay
    l1: float = 0.0  # explicit L1 penalty on weights, added to the loss
    l2: float = 0.0  # explicit L2 penalty on weights, added to the loss
    label_smoothing: float = 0.0  # cross-entropy label smoothing

    # --- evaluation ---
    robustness_levels: int = 4  # blur-robustness profile: test accuracy at levels 1..this of every kernel

    # --- execution ---
    seed: int = 0  # seeds weights, batch order and random level choices
    device: str = "auto"  # auto (cuda if present), cpu, cuda or cuda:N
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16
    compile: bool = False  # torch.compile the model (pays off on GPUs for long trials)
    fail_at_epoch: int = 0  # raise an error at this epoch, to exercise failure handling; 0 = never

    # ------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: typing.Mapping[str, typing.Any]) -> "TrialConfig":
        """Build and validate a config from a plain dict (unknown keys are an error)."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; allowed: {sorted(known)}")
        kwargs = {}
        hints = typing.get_type_hints(cls)
        for name, value in values.items():
            kwargs[name] = _coerce(name, value, hints[name])
        config = cls(**kwargs)
        config.validate()
        return config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------
    @property
    def blurs(self) -> bool:
        return self.method in BLUR_METHODS

    @property
    def anneals(self) -> bool:
        return self.method in ANNEAL_METHODS

    @property
    def resolved_theta_schedule(self) -> str:
        if self.theta_schedule:
            return self.theta_schedule
        return "linear" if self.anneals else "constant"

    @property
    def resolved_anneal_epochs(self) -> int:
        return self.anneal_epochs or self.epochs - 1

    @property
    def curriculum_epochs(self) -> int:
        """Epochs spent before the originals (0 for methods without a curriculum)."""
        if self.blurs or self.resolved_theta_schedule == "step":
            return (self.K - 1) * self.epochs_per_level
        return 0

    def describe(self) -> str:
        """The method and only the parameters that matter to it, e.g. for progress lines."""
        keys = ["K", "epochs_per_level", "kernel"] if self.blurs else []
        if self.anneals:
            keys += ["theta_schedule", "theta0"]
            schedule = self.resolved_theta_schedule
            keys += ["anneal_epochs"] if schedule in ("linear", "cosine") else []
            keys += ["K", "epochs_per_level"] if schedule == "step" and not self.blurs else []
        values = {**self.to_dict(), "theta_schedule": self.resolved_theta_schedule,
                  "anneal_epochs": self.resolved_anneal_epochs}
        shown = " ".join(f"{k}={values[k]:.3g}" if isinstance(values[k], float) else f"{k}={values[k]}"
                         for k in keys)
        return f"{self.method} {shown}".strip()

    def validate(self) -> None:
        _one_of("method", self.method, METHODS)
        _one_of("dataset", self.dataset, DATASETS)
        _one_of("model", self.model, MODELS)
        _one_of("kernel", self.kernel, KERNELS)
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _one_of("precision", self.precision, PRECISIONS)
        if self.theta_schedule:
            _one_of("theta_schedule", self.theta_schedule, THETA_SCHEDULES)
        schedule = self.resolved_theta_schedule
        if self.anneals and schedule == "constant":
            raise ConfigError(
                f"theta_schedule: method {self.method!r} anneals, so it needs one of "
                f"{[s for s in THETA_SCHEDULES if s != 'constant']}, not 'constant'"
            )
        if not self.anneals and schedule != "constant":
            raise ConfigError(
                f"theta_schedule: {schedule!r} applies only to methods {list(ANNEAL_METHODS)}; "
                f"method {self.method!r} trains plain ReLU networks (leave it empty or 'constant')"
            )
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device: {self.device!r} is not allowed; use auto, cpu, cuda or cuda:N")
        _at_least("epochs", self.epochs, 1)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("width", self.width, 1)
        _at_least("K", self.K, 1)
        _at_least("epochs_per_level", self.epochs_per_level, 1)
        _at_least("robustness_levels", self.robustness_levels, 1)
        _at_least("anneal_epochs", self.anneal_epochs, 0)
        _at_least("fail_at_epoch", self.fail_at_epoch, 0)
        for name in ("weight_decay", "l1", "l2", "momentum", "label_smoothing"):
            _at_least(name, getattr(self, name), 0.0)
        if not self.lr > 0:
            raise ConfigError(f"lr: must be > 0, got {self.lr}")
        if not 0 < self.theta0 <= math.pi / 4 + 1e-12:
            raise ConfigError(f"theta0: must be in (0, π/4 = {math.pi / 4:.6f}], got {self.theta0}")
        if (self.blurs or schedule == "step") and self.K < 2:
            raise ConfigError(f"K: method {self.method!r} needs at least 2 levels, got K={self.K}")
        if self.curriculum_epochs >= self.epochs:
            raise ConfigError(
                f"epochs: a curriculum of (K-1)*epochs_per_level = ({self.K}-1)*{self.epochs_per_level}"
                f" = {self.curriculum_epochs} epochs leaves no epoch on original images within "
                f"epochs={self.epochs}; need epochs >= {self.curriculum_epochs + 1}"
            )
        if schedule in ("linear", "cosine") and self.resolved_anneal_epochs >= self.epochs:
            raise ConfigError(
                f"anneal_epochs: θ must reach 0 with at least one ReLU epoch left, so anneal_epochs "
                f"must be in 1..{self.epochs - 1} (epochs={self.epochs}), got {self.anneal_epochs}"
            )
        if schedule in ("linear", "cosine") and self.resolved_anneal_epochs < 1:
            raise ConfigError(f"anneal_epochs: need epochs >= 2 to anneal, got epochs={self.epochs}")


def _one_of(name: str, value: str, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}: {value!r} is not allowed; choose one of {list(allowed)}")


def _at_least(name: str, value, low) -> None:
    if value < low:
        raise ConfigError(f"{name}: must be >= {low}, got {value}")


def _coerce(name: str, value, kind):
    """Accept what search spaces and CLIs naturally produce (numpy scalars, '3', 'true')."""
    try:
        if kind is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if kind is float:
            return float(value)
        if kind is str:
            if not isinstance(value, str):
                raise ValueError(value)
            return value
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected {kind.__name__}, got {value!r}") from None
    return value


def field_docs() -> dict[str, str]:
    """The one-line comment of every field, read from this file (used for --help)."""
    import inspect
    import re

    docs = {}
    for line in inspect.getsource(TrialConfig).splitlines():
        match = re.match(r"\s+(\w+): [\w\[\], |]+ = .*?  # (.*)$", line)
        if match:
            docs[match.group(1)] = match.group(2)
    return docs


__all__ = ["TrialConfig", "ConfigError", "field_docs"] + [
    "METHODS", "BLUR_METHODS", "ANNEAL_METHODS", "DATASETS", "MODELS", "KERNELS",
    "THETA_SCHEDULES", "OPTIMIZERS", "LR_SCHEDULES",
]
