"""The one config type of a trial, and the one table of what each method is and uses.

Search spaces produce plain dicts; `TrialConfig.from_dict` turns them into this dataclass or
fails with a `ConfigError` naming the field and the allowed values. The CLI flags of
`python -m study.train` are generated from these fields, so every name here is also a flag.

Every rule about methods lives here and nowhere else: `METHOD_TABLE` says what a method is
(its role, whether it blurs the input, anneals θ, learns θ or smooths features);
`TrialConfig.own_fields()` says which fields a method uses beyond the shared ones (the search
spaces suggest exactly those, MLflow logs exactly those, the report shows exactly those);
`TrialConfig.curriculum_epochs` is the budget rule; `TrialConfig.with_method` builds matched
controls and matched baselines.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    role: str  # "reference" (baseline), "curriculum", "variant" (searched, not a curriculum) or "control"
    blurs: bool = False  # training images follow a blur-level plan over levels K..2
    anneals: bool = False  # θ is scheduled from exactly π/4 (linear network) to exactly 0 (ReLU)
    learns_theta: bool = False  # θ is a learned parameter (a learned leaky slope; need not reach ReLU)
    smooths: bool = False  # Curriculum by Smoothing: Gaussian blur of the feature maps, σ decaying to 0
    matched_to: str | None = None  # controls: the curriculum whose best config they re-run, method changed


METHOD_TABLE: dict[str, Method] = {
    "baseline": Method("reference"),
    "sharpening": Method("curriculum", blurs=True),
    "annealing": Method("curriculum", anneals=True),
    "combined": Method("curriculum", blurs=True, anneals=True),
    "cbs": Method("curriculum", smooths=True),
    "learned_theta": Method("variant", learns_theta=True),
    "anti": Method("control", blurs=True, matched_to="sharpening"),
    "random_order": Method("control", blurs=True, matched_to="sharpening"),
    "blur_aug": Method("control", blurs=True, matched_to="sharpening"),
}
METHODS = tuple(METHOD_TABLE)  # the reading order of every table: reference, curricula, variants, controls
CONTROLS = tuple(m for m, spec in METHOD_TABLE.items() if spec.role == "control")
SEARCHED = tuple(m for m in METHODS if m not in CONTROLS)  # controls are re-run, never searched
BLUR_METHODS = tuple(m for m, spec in METHOD_TABLE.items() if spec.blurs)
ANNEAL_METHODS = tuple(m for m, spec in METHOD_TABLE.items() if spec.anneals)
# At K ≤ 3 the orderings coincide (K=2: one block; K=3: random_order is one of the other two
# half the time), so a study that runs controls needs K ≥ this.
CONTROL_MIN_K = 4

# The image side of every dataset: the largest blur level is half of it.
DATASET_SIDES = {"digits": 8, "mnist5k": 28, "mnist": 28, "fashion_mnist": 28, "cifar10": 32}
DATASETS = tuple(DATASET_SIDES)
DATASET_CLASSES = {"digits": 10, "mnist5k": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10}  # chance = 1/this
MODELS = ("small_cnn", "mlp", "resnet18")
KERNELS = ("box", "gaussian", "downsample")  # blur kernel families (trainer.blur implements them)
# The hyperparameters every method shares and every space searches for every method; matched
# runs copy them from one method's chosen config to another's.
SHARED = ("optimizer", "lr", "weight_decay", "batch_size")
POOLS = ("max", "avg", "none")
ANNEAL_SCHEDULES = ("linear", "cosine", "step")
LEARNED_SCHEDULES = ("trainable", "trainable_channel")
THETA_SCHEDULES = ("constant", *ANNEAL_SCHEDULES, *LEARNED_SCHEDULES)
OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("constant", "cosine", "step")
PRECISIONS = ("auto", "fp32", "bf16")
THETA_MAX = math.pi / 4
# Curriculum by Smoothing as published (Sinha et al. 2020): σ x0.9 every 5 epochs of 200, 40 decays.
CBS_AUTHORS_DECAY, CBS_AUTHORS_DECAYS = 0.9, 200 // 5


def max_level(height: int, width: int) -> int:
    """The largest blur level for an image: a blur wider than half the image erases it."""
    return max(1, min(height, width) // 2)


class ConfigError(ValueError):
    """A trial config that cannot run; the message names the field and what is allowed."""


@dataclass
class TrialConfig:
    # --- what is studied ---
    method: str = "baseline"  # one of METHODS; controls are anti, random_order and blur_aug
    dataset: str = "digits"  # one of DATASETS; digits and mnist5k are offline, the rest are torchvision
    data_dir: str = "data"  # torchvision datasets live here (digits and mnist5k ignore it)
    download: bool = False  # let torchvision download missing files (needs network)
    model: str = "small_cnn"  # one of MODELS
    width: int = 16  # filters per conv (small_cnn) or hidden units / 16 (mlp); resnet18 ignores it
    pool: str = "max"  # small_cnn: 2x2 pooling after the 2nd and 3rd conv, one of POOLS (avg keeps θ=π/4 linear)
    batch_norm: bool = True  # small_cnn: BatchNorm after every convolution (the reference has none)

    # --- progressive sharpening and its controls (methods that blur; `step` θ also uses K and epochs_per_level) ---
    K: int = 4  # number of blur levels; level 1 is the original image, level K the most blurred
    epochs_per_level: int = 1  # epochs on each of the levels K..2 before the originals
    kernel: str = "box"  # low-pass kernel family, one of KERNELS (variance-matched across families)

    # --- convexity annealing (annealing, combined) and learned θ (learned_theta) ---
    theta_schedule: str = ""  # one of THETA_SCHEDULES; "" = linear for annealing, trainable for learned_theta
    theta0: float = THETA_MAX  # learned_theta: the initial θ; annealing always starts at π/4 (linear network)
    anneal_epochs: int = 0  # linear/cosine: epochs over which θ falls to 0; 0 = epochs - 1
    theta_lr_scale: float = 0.1  # learned_theta: θ's learning rate as a fraction of lr (a smaller one, as the reference suggests)

    # --- Curriculum by Smoothing (cbs): Gaussian blur after every convolution ---
    sigma0: float = 1.0  # σ of the feature blur in the first epoch (authors' default 1)
    sigma_decay: float = 0.0  # σ is multiplied by this every decay_every epochs; 0 = the authors' whole decay (x0.9 every 5 of 200 epochs: σ0 to 0.015·σ0) spread over smooth_epochs
    decay_every: int = 1  # epochs between decays (authors' default 5, at 200 epochs)
    smooth_epochs: int = 0  # epochs with σ > 0; σ = 0 (no smoothing) from the next epoch on; 0 = epochs - 1
    smooth_kernel: int = 3  # side of the Gaussian smoothing kernel (authors' default 3)

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

    # --- regime (training split only; validation and test stay clean and balanced) ---
    label_noise: float = 0.0  # fraction of training labels replaced by another class (symmetric, fixed per dataset)
    imbalance: float = 1.0  # ρ = n_max / n_min of a long-tailed training split (exponential profile); 1 = balanced
    replicate: int = 0  # whole-pipeline replicate: redraws the stratified train/val(/test) split and the noise and imbalance draws; 0 = the default split

    # --- evaluation ---
    robustness_levels: int = 7  # blur-robustness profile: test accuracy at levels 1..this of every kernel (capped by the image)
    corruptions: bool = True  # second endpoint: test accuracy on the test split's common corruptions (MNIST-C / CIFAR-10-C style), timed apart

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
        hints = typing.get_type_hints(cls)
        config = cls(**{name: _coerce(name, value, hints[name]) for name, value in values.items()})
        config.validate()
        return config

    @classmethod
    def of(cls, config: "TrialConfig | typing.Mapping") -> "TrialConfig":
        """A TrialConfig as is, or one built from a dict."""
        return config if isinstance(config, cls) else cls.from_dict(config)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------
    # What the method is and uses: every other module asks these.
    @property
    def spec(self) -> Method:
        return METHOD_TABLE[self.method]

    @property
    def blurs(self) -> bool:
        return self.spec.blurs

    @property
    def anneals(self) -> bool:
        return self.spec.anneals

    @property
    def resolved_theta_schedule(self) -> str:
        if self.theta_schedule:
            return self.theta_schedule
        return "linear" if self.anneals else "trainable" if self.spec.learns_theta else "constant"

    @property
    def resolved_anneal_epochs(self) -> int:
        return self.anneal_epochs or self.epochs - 1

    @property
    def resolved_smooth_epochs(self) -> int:
        return self.smooth_epochs or self.epochs - 1

    @property
    def resolved_sigma_decay(self) -> float:
        """sigma_decay, or by default the decay that takes σ as far within this trial's smoothed
        epochs as the authors' schedule does in 200 epochs (x0.9 every 5: 40 decays, σ0 to 0.015·σ0).
        Their own values squeezed into 10 epochs kept σ at 0.9-1 for 9 epochs, then dropped it to 0
        at the schedule's smallest learning rate: 80% validation accuracy on digits, baseline 97%."""
        if self.sigma_decay:
            return self.sigma_decay
        decays = (self.resolved_smooth_epochs - 1) // self.decay_every
        return CBS_AUTHORS_DECAY ** (CBS_AUTHORS_DECAYS / decays) if decays else 1.0

    def own_fields(self) -> tuple[str, ...]:
        """The fields this method uses beyond the shared ones, in the order a space suggests them."""
        spec, schedule = self.spec, self.resolved_theta_schedule
        own = []
        if spec.anneals or spec.learns_theta:
            own.append("theta_schedule")
        if spec.blurs or (spec.anneals and schedule == "step"):
            own += ["K", "epochs_per_level"]
        if spec.blurs:
            own.append("kernel")
        if spec.anneals and schedule in ("linear", "cosine"):
            own.append("anneal_epochs")
        if spec.anneals or spec.learns_theta:
            own.append("theta0")
        if spec.learns_theta:
            own.append("theta_lr_scale")
        if spec.smooths:
            own += ["sigma0", "sigma_decay", "decay_every", "smooth_epochs", "smooth_kernel"]
        return tuple(own)

    def fields_used(self) -> tuple[str, ...]:
        """Every field that changes what this trial does: its method's own and the shared ones."""
        own = set(self.own_fields())
        return tuple(name for name in FIELD_NAMES if name not in METHOD_FIELDS or name in own)

    def used_values(self) -> dict:
        """fields_used() with their effective values (a default "" or 0 resolved)."""
        resolved = {"theta_schedule": self.resolved_theta_schedule, "anneal_epochs": self.resolved_anneal_epochs,
                    "smooth_epochs": self.resolved_smooth_epochs, "sigma_decay": self.resolved_sigma_decay}
        return {name: resolved.get(name, getattr(self, name)) for name in self.fields_used()}

    def with_method(self, method: str) -> dict:
        """This config with another method: what the new method shares with this one is kept, its
        own fields this method does not have take their defaults. A control of sharpening keeps K,
        kernel and every shared value; a matched baseline keeps only the shared ones."""
        other = TrialConfig(method=method)
        keep = set(self.fields_used()) & set(other.fields_used())
        values = {name: getattr(self, name) if name in keep else getattr(other, name) for name in FIELD_NAMES}
        values["method"] = method
        return values

    @property
    def curriculum_epochs(self) -> int:
        """Epochs before the final regime (originals, θ = 0, σ = 0): the budget rule's one home."""
        spec, schedule, lengths = self.spec, self.resolved_theta_schedule, [0]
        if spec.blurs or (spec.anneals and schedule == "step"):
            lengths.append((self.K - 1) * self.epochs_per_level)
        if spec.anneals and schedule in ("linear", "cosine"):
            lengths.append(self.resolved_anneal_epochs)
        if spec.smooths:
            lengths.append(self.resolved_smooth_epochs)
        return max(lengths)

    def in_final_regime(self, epoch: int) -> bool:
        """Whether 1-based `epoch` trains as plain training does (originals, ReLU, no smoothing)."""
        return epoch > self.curriculum_epochs

    def describe(self, compact: bool = False) -> str:
        """The method and only the parameters that matter to it: `sharpening K=4 epochs_per_level=1
        kernel=box`, or compact for run names: `sharpening K4 e1 box`."""
        values = self.used_values()
        parts = []
        for name in self.own_fields():
            value = values[name]
            shown = f"{value:.3g}" if isinstance(value, float) else str(value)
            if compact:
                parts.append(shown if isinstance(value, str) else f"{SHORT.get(name, name)}{shown}")
            else:
                parts.append(f"{name}={shown}")
        return " ".join([self.method, *parts])

    # ------------------------------------------------------------------
    def validate(self) -> None:
        _one_of("method", self.method, METHODS)
        _one_of("dataset", self.dataset, DATASETS)
        _one_of("model", self.model, MODELS)
        _one_of("kernel", self.kernel, KERNELS)
        _one_of("pool", self.pool, POOLS)
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _one_of("precision", self.precision, PRECISIONS)
        schedule = self.resolved_theta_schedule
        allowed = (ANNEAL_SCHEDULES if self.anneals else LEARNED_SCHEDULES if self.spec.learns_theta
                   else ("constant",))
        if schedule not in allowed:
            raise ConfigError(f"theta_schedule: {schedule!r} is not allowed for method {self.method!r}; "
                              f"choose one of {list(allowed)}" + ("" if allowed != ("constant",) else
                                                                   " (or leave it empty)"))
        if self.anneals and not math.isclose(self.theta0, THETA_MAX, abs_tol=1e-9):
            raise ConfigError(f"theta0: method {self.method!r} starts at π/4 = {THETA_MAX:.6f} (a linear "
                              f"network) by definition, got {self.theta0}; a θ0 below π/4 is another method")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device: {self.device!r} is not allowed; use auto, cpu, cuda or cuda:N")
        for name in ("epochs", "batch_size", "width", "K", "epochs_per_level", "robustness_levels",
                     "decay_every", "smooth_kernel"):
            _at_least(name, getattr(self, name), 1)
        for name in ("anneal_epochs", "smooth_epochs", "fail_at_epoch", "weight_decay", "l1", "l2",
                     "momentum", "label_smoothing", "sigma0", "seed", "replicate"):
            _at_least(name, getattr(self, name), 0)
        for name in ("lr", "theta_lr_scale"):
            if not 0 < getattr(self, name) < math.inf:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        classes = DATASET_CLASSES[self.dataset]
        if not 0 <= self.label_noise < (classes - 1) / classes:
            raise ConfigError(f"label_noise: must be in [0, {(classes - 1) / classes:.2f}) (above it the noisy "
                              f"labels outnumber the true ones), got {self.label_noise}")
        if not 1 <= self.imbalance <= 1000:
            raise ConfigError(f"imbalance: ρ = n_max / n_min must be in [1, 1000] (1 = balanced), got {self.imbalance}")
        if not 0 <= self.sigma_decay <= 1:
            raise ConfigError(f"sigma_decay: must be in (0, 1], or 0 for the default decay, got {self.sigma_decay}")
        if self.smooth_kernel % 2 == 0:
            raise ConfigError(f"smooth_kernel: must be odd (3, 5, ...), got {self.smooth_kernel}")
        if not 0 < self.theta0 <= THETA_MAX + 1e-12:
            raise ConfigError(f"theta0: must be in (0, π/4 = {THETA_MAX:.6f}], got {self.theta0}")
        if self.spec.smooths and self.model == "mlp":
            raise ConfigError("model: method 'cbs' smooths the feature maps after every convolution; 'mlp' has "
                              "none, so choose small_cnn or resnet18")
        if "K" in self.own_fields():
            top = max_level(DATASET_SIDES[self.dataset], DATASET_SIDES[self.dataset])
            if not 2 <= self.K <= top:
                raise ConfigError(f"K: method {self.method!r} on {self.dataset} "
                                  f"({DATASET_SIDES[self.dataset]}x{DATASET_SIDES[self.dataset]} images) "
                                  f"needs K in 2..{top}, got K={self.K}")
        for name, value in (("anneal_epochs", self.resolved_anneal_epochs), ("smooth_epochs", self.resolved_smooth_epochs)):
            if name in self.own_fields() and value < 1:
                raise ConfigError(f"epochs: method {self.method!r} needs epochs >= 2 (at least one epoch of its "
                                  f"schedule before the plain one), got epochs={self.epochs}")
        if self.curriculum_epochs >= self.epochs:
            raise ConfigError(
                f"epochs: method {self.method!r} spends {self.curriculum_epochs} epochs before its final "
                f"regime ({self._curriculum_words()}), which leaves no epoch of plain training within "
                f"epochs={self.epochs}; need epochs >= {self.curriculum_epochs + 1}")

    def _curriculum_words(self) -> str:
        words = []
        if "K" in self.own_fields():
            words.append(f"(K-1)*epochs_per_level = ({self.K}-1)*{self.epochs_per_level}")
        if "anneal_epochs" in self.own_fields():
            words.append(f"anneal_epochs = {self.resolved_anneal_epochs}")
        if self.spec.smooths:
            words.append(f"smooth_epochs = {self.resolved_smooth_epochs}")
        return "; ".join(words)


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(TrialConfig))
# Fields only some methods use: a method that does not use one neither searches nor logs it.
METHOD_FIELDS = frozenset({"K", "epochs_per_level", "kernel", "theta_schedule", "theta0", "anneal_epochs",
                           "theta_lr_scale", "sigma0", "sigma_decay", "decay_every", "smooth_epochs",
                           "smooth_kernel"})
# Short names in run names (`sharpening K4 e1 box`).
SHORT = {"epochs_per_level": "e", "anneal_epochs": "a", "theta0": "θ", "theta_lr_scale": "θlr×",
         "sigma0": "σ", "sigma_decay": "×", "decay_every": "/", "smooth_epochs": "s", "smooth_kernel": "k"}


TAGS = "_tags"  # in a Tune config: what the run is (phase, slot, matched_to, Optuna trial), not how it trains


def split_config(config: typing.Mapping) -> tuple[dict, dict]:
    """A Tune config → (the trial config dict, its run tags)."""
    config = dict(config)
    return config, dict(config.pop(TAGS, {}))


def role(method: str) -> str:
    return METHOD_TABLE[method].role if method in METHOD_TABLE else "unknown"


def method_order(methods) -> list[str]:
    """Methods in the table's reading order (unknown names last, sorted)."""
    methods = list(dict.fromkeys(methods))
    return [m for m in METHODS if m in methods] + sorted(m for m in methods if m not in METHOD_TABLE)


def _one_of(name: str, value: str, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}: {value!r} is not allowed; choose one of {list(allowed)}")


def _at_least(name: str, value, low) -> None:
    if not value >= low or value in (math.inf, -math.inf):  # `not >=` also refuses NaN
        raise ConfigError(f"{name}: must be a finite number >= {low}, got {value}")


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


class OneLineParser(argparse.ArgumentParser):
    """Command-line mistakes are one `error:` line (flag, value, what is allowed) and exit status 2.
    Here, not in trainer.train, because every entry point uses it and this module imports no torch."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


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


__all__ = ["TrialConfig", "ConfigError", "OneLineParser", "Method", "split_config", "TAGS", "SHARED", "field_docs", "role", "method_order", "max_level"] + [
    "METHOD_TABLE", "METHODS", "SEARCHED", "CONTROLS", "BLUR_METHODS", "ANNEAL_METHODS", "DATASETS",
    "DATASET_SIDES", "DATASET_CLASSES", "MODELS", "KERNELS", "POOLS", "THETA_SCHEDULES", "ANNEAL_SCHEDULES",
    "LEARNED_SCHEDULES", "OPTIMIZERS", "LR_SCHEDULES", "THETA_MAX", "FIELD_NAMES", "METHOD_FIELDS",
]
