"""The annealed activation, Curriculum by Smoothing's feature blur, and the networks.

a_θ(x) = max(x·tan θ, x) with θ ∈ [0, π/4]: θ = π/4 makes it the identity (the network is affine when
its pooling is "avg" or "none" and BatchNorm is in eval mode), θ = 0 makes it ReLU. Every network here
takes an `Activations` factory, so turning annealing on replaces every ReLU without touching the
architecture; likewise an optional `Smoothing` factory puts a GaussianSmoothing after every conv.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

THETA_MAX = math.pi / 4
POOLS = ("max", "avg", "none")


def _clamp_theta(theta: float) -> float:
    return min(max(theta, 0.0), THETA_MAX)


def _slope(theta: float) -> float:
    """tan θ of the clamped θ: exactly 0 at θ ≤ 0, exactly 1 at θ ≥ π/4 (math.tan(π/4) is 1 − 2⁻⁵³)."""
    theta = _clamp_theta(theta)
    return 0.0 if theta <= 0.0 else 1.0 if theta >= THETA_MAX else math.tan(theta)


class _LearnedLeak(torch.autograd.Function):
    """y = x for x > 0, slope·x otherwise; `slope` a 0-d tensor or one per channel (dim 1).

    Gradients are one-sided at θ = π/4 (no tie splitting as in torch.maximum):
    d slope = Σ_{x<0} g·x (per channel), dx = g·(slope where x ≤ 0 else 1) — F.leaky_relu's convention
    at x = 0 exactly, which contributes nothing to d slope. Measured on CPU (64×32×28×28, channels_last,
    fwd+bwd): ~3-4× a ReLU, where autograd through F.prelu costs ~14× and through torch.where ~30×.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, slope)
        # Autocast would run prelu in bf16 even for an fp32 x; keep x's dtype as leaky_relu does.
        with torch.autocast(x.device.type, enabled=False):
            return F.prelu(x, slope.to(x.dtype))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, slope = ctx.saved_tensors
        per_channel = slope.dim() == 1
        shape = (1, -1) + (1,) * (x.dim() - 2) if per_channel else ()
        kept = torch.ops.aten.threshold_backward(grad, x, 0)  # grad where x > 0, else 0 (ReLU's backward)
        grad_x = grad_slope = None
        if ctx.needs_input_grad[0]:
            # g·slope where x ≤ 0, g where x > 0: lerp(g, kept, 1 − slope), one fused pass.
            grad_x = torch.lerp(grad, kept, (1 - slope).to(grad.dtype).reshape(shape))
        if ctx.needs_input_grad[1]:
            dims = [d for d in range(x.dim()) if d != 1] if per_channel else None
            # (kept − g)·x = −g·x on x ≤ 0, 0 elsewhere: in place, no new full-size temporaries.
            grad_slope = -kept.sub_(grad).mul_(x).sum(
                dim=dims, dtype=torch.promote_types(slope.dtype, torch.float32)).to(slope.dtype)
        return grad_x, grad_slope


class AnnealedActivation(nn.Module):
    """a_θ(x) = max(x·tan θ, x), computed as where(x < 0, x·tan θ, x), θ clamped to [0, π/4].

    `theta` is either a learned nn.Parameter (a shared 0-d one or one per channel) or, for a scheduled θ,
    a plain tensor that becomes a non-persistent buffer. Set a scheduled θ with `set_theta` (or
    `Activations.set_theta`); a direct in-place write to the buffer is noticed too (version counter).

    Three paths, all with the value of where(x < 0, x·tan θ, x):
    - scheduled, eager: F.relu at θ = 0, else F.leaky_relu with a Python-float slope cached per
      set_theta — a ReLU's cost (no tensor θ in the graph, nothing to differentiate);
    - learned, eager: `_LearnedLeak`, a custom autograd Function with one-sided gradients at the kink;
    - under torch.compile: the plain torch.where form on the tensor θ (inductor fuses it into one kernel
      and its gradient is one-sided; a Python float would be a guard, recompiling at every step).
    At x = 0 exactly the input gradient is tan θ (F.leaky_relu's convention; 0 at θ = 0, as F.relu).
    """

    def __init__(self, theta: torch.Tensor):
        super().__init__()
        self.learned = isinstance(theta, nn.Parameter)
        if self.learned:
            self.theta = theta
        else:
            # A scheduled θ is owned by `Activations` and written every step; not checkpointed,
            # because it is a pure function of the step.
            self.register_buffer("theta", theta, persistent=False)
            self._seen_version = -1
            self._slope = 0.0
            self._refresh()

    def _theta_version(self) -> int:
        # Inference tensors (a model built under torch.inference_mode) keep no version counter:
        # there only set_theta updates the cached slope.
        return -2 if self.theta.is_inference() else self.theta._version

    def _refresh(self) -> None:
        self._slope = _slope(float(self.theta))
        self._seen_version = self._theta_version()

    @torch.no_grad()
    def set_theta(self, value: float) -> None:
        self.theta.fill_(value)
        if self.learned:
            return
        self._slope = _slope(float(value))
        self._seen_version = self._theta_version()

    def _clamped_theta(self) -> torch.Tensor:
        # Clamp the value but keep the gradient on the whole closed range: Tensor.clamp passes no
        # gradient at its bounds, which froze a trainable θ started at θ0 = π/4 for good. Outside the
        # range the gradient is 0 (clamp's); Activations.clamp_ pulls θ back after every step.
        theta = self.theta
        return torch.where((theta >= 0.0) & (theta <= THETA_MAX), theta, theta.clamp(0.0, THETA_MAX))

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """where(x < 0, x·tan θ, x) on the tensor θ: the definition, and the path under torch.compile."""
        theta = self._clamped_theta()
        if theta.dim() == 1:  # one θ per channel: broadcast over (N, C, ...)
            theta = theta.view(1, -1, *([1] * (x.dim() - 2)))
        # x <= 0 (the same values: 0·tan θ = 0) so that at x = 0 the gradient is tan θ, as on the eager paths.
        return torch.where(x <= 0, x * torch.tan(theta).to(x.dtype), x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return self.reference(x)
        if self.learned:
            return _LearnedLeak.apply(x, torch.tan(self._clamped_theta()))
        if self._theta_version() != self._seen_version:  # written in place, not through set_theta
            self._refresh()
        if self._slope == 0.0:
            return F.relu(x)
        return F.leaky_relu(x, self._slope)


class Activations:
    """Makes the activation layers of one network and owns their θ.

    mode: "relu" (plain nn.ReLU), "scheduled" (one θ written by the trainer), "trainable" (one
    shared learned θ) or "trainable_channel" (one learned θ per channel of every layer).
    """

    def __init__(self, mode: str = "relu", theta0: float = THETA_MAX):
        if mode not in ("relu", "scheduled", "trainable", "trainable_channel"):
            raise ValueError(f"activation mode {mode!r} is not allowed")
        self.mode = mode
        self.theta0 = theta0
        self.shared = None
        if mode == "scheduled":
            self.shared = torch.tensor(float(theta0))
        elif mode == "trainable":
            self.shared = nn.Parameter(torch.tensor(float(theta0)))
        self.layers: list[AnnealedActivation] = []

    def __call__(self, channels: int) -> nn.Module:
        if self.mode == "relu":
            return nn.ReLU()
        if self.mode == "trainable_channel":
            theta = nn.Parameter(torch.full((channels,), float(self.theta0)))
        else:
            theta = self.shared
        layer = AnnealedActivation(theta)
        self.layers.append(layer)
        return layer

    def thetas(self) -> list[torch.Tensor]:
        return [layer.theta for layer in self.layers]

    @torch.no_grad()
    def set_theta(self, value: float) -> None:
        """Write a scheduled θ into every layer (they may live on another device than `shared`)."""
        value = float(value)
        for layer in self.layers:
            layer.set_theta(value)

    @torch.no_grad()
    def clamp_(self) -> None:
        """Keep learned θ inside [0, π/4] after every optimiser step."""
        for theta in self.thetas():
            theta.clamp_(0.0, THETA_MAX)

    @torch.no_grad()
    def summary(self) -> dict[str, float]:
        if not self.layers:
            return {"theta": 0.0, "theta_min": 0.0, "theta_max": 0.0}
        values = torch.cat([t.detach().float().reshape(-1).cpu() for t in self.thetas()])
        values = values.clamp(0.0, THETA_MAX)
        return {
            "theta": float(values.mean()),
            "theta_min": float(values.min()),
            "theta_max": float(values.max()),
        }


class GaussianSmoothing(nn.Module):
    """Curriculum by Smoothing's feature blur (Sinha, Garg & Larochelle, NeurIPS 2020; pairlab/CBS).

    A depthwise convolution of every channel with the sampled Gaussian exp(−k²/2σ²), k ∈ [−r, r],
    r = kernel_size // 2, normalised to sum 1 (the 2-D kernel is the outer product of the 1-D taps, as
    the authors' get_gaussian_filter builds it). Zero padding of r keeps the size, as the authors'
    Conv2d(padding=r) does, so borders darken a little while σ > 0; in scipy's terms this is
    gaussian_filter(mode="constant", cval=0, truncate=r/σ). One 2-D k×k depthwise pass, not two
    separable passes: for k = 3 on CPU in channels_last the 2-D pass measured ~1.9× faster (fwd+bwd,
    64×16×28×28); in NCHW both were 3-4× slower than in channels_last.

    σ is not a parameter (not learned, not in the state_dict): `set_sigma` writes it and recomputes the
    taps into a non-persistent buffer, which follows the module across devices and dtypes. At σ = 0 the
    module returns its input object unchanged — no convolution, no cost.
    """

    def __init__(self, channels: int, kernel_size: int = 3, sigma: float = 0.0):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive (3, 5, ...), got {kernel_size}")
        self.channels = channels
        self.kernel_size = kernel_size
        self.radius = kernel_size // 2
        self.register_buffer("kernel", torch.zeros(channels, 1, kernel_size, kernel_size), persistent=False)
        self.sigma = 0.0
        self.active = False  # σ > 0 and a kernel wider than 1: the only thing forward branches on
        self.set_sigma(sigma)

    @staticmethod
    def taps(sigma: float, kernel_size: int) -> torch.Tensor:
        """The 1-D taps (float64), normalised to sum 1; [0, …, 1, …, 0] at σ = 0."""
        radius = kernel_size // 2
        k = torch.arange(-radius, radius + 1, dtype=torch.float64)
        if sigma <= 0.0:
            return (k == 0).to(torch.float64)
        taps = torch.exp(-(k**2) / (2.0 * sigma**2))
        return taps / taps.sum()

    @torch.no_grad()
    def set_sigma(self, sigma: float) -> None:
        sigma = float(sigma)
        if not sigma >= 0.0:  # also rejects NaN
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        self.sigma = sigma
        self.active = sigma > 0.0 and self.radius > 0
        if self.active:
            taps = self.taps(sigma, self.kernel_size)
            kernel = torch.outer(taps, taps)
            self.kernel.copy_(kernel.expand_as(self.kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return x
        return F.conv2d(x, self.kernel.to(x.dtype), padding=self.radius, groups=self.channels)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, sigma={self.sigma:g}"


class Smoothing:
    """Makes the GaussianSmoothing layers of one network (one after every convolution) and owns σ.

    Pass to `build_model(..., smoothing=Smoothing(3))`; call `set_sigma(σ)` at the start of every epoch
    (σ is not checkpointed: after a restore, set it again before training on). `smooth_shortcut`: also
    smooth ResNet's 1×1 downsample convolution. Off by default, as in the authors' code (pairlab/CBS
    resnet.py smooths after conv1 and both convs of every block, not the shortcut's 1×1 conv).
    """

    def __init__(self, kernel_size: int = 3, smooth_shortcut: bool = False):
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"smoothing kernel_size must be odd and positive (3, 5, ...), got {kernel_size}")
        self.kernel_size = kernel_size
        self.smooth_shortcut = smooth_shortcut
        self.sigma = 0.0
        self.layers: list[GaussianSmoothing] = []

    def __call__(self, channels: int) -> GaussianSmoothing:
        layer = GaussianSmoothing(channels, self.kernel_size, self.sigma)
        self.layers.append(layer)
        return layer

    def set_sigma(self, value: float) -> None:
        """Write σ into every layer (σ = 0: every layer is the identity)."""
        self.sigma = float(value)
        for layer in self.layers:
            layer.set_sigma(self.sigma)


def _pool_kind(pool) -> str:
    if pool is True:
        return "max"
    if pool is False:
        return "none"
    if pool not in POOLS:
        raise ValueError(f"pool {pool!r} is not allowed; choose one of {', '.join(POOLS)}")
    return pool


class SmallCNN(nn.Module):
    """Three conv layers of `width` filters (as in the ConvexityAnnealing reference), a dense head.

    pool: "max" (2×2 max-pool after the 2nd and 3rd conv), "avg" (2×2 average pool there: with
    eval-mode BatchNorm the network is affine at θ = π/4) or "none"; True/False mean "max"/"none".
    smoothing: a `Smoothing` factory puts a GaussianSmoothing after every conv (before BatchNorm).
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int, act: Activations,
                 width: int = 16, pool: str | bool = "max", hidden: int = 64, batch_norm: bool = True,
                 smoothing: Optional[Smoothing] = None):
        super().__init__()
        pool = _pool_kind(pool)
        layers: list[nn.Module] = []
        size = image_size
        channels = in_channels
        for index in range(3):
            # BatchNorm is our addition to the reference net: without it, 6-epoch digits runs
            # stalled at chance for some seeds and learning rates (measured: val_acc 0.24-0.55
            # vs 0.95-0.97 with it, 3 seeds x 5 methods), which would drown the curriculum effect.
            layers.append(nn.Conv2d(channels, width, 3, padding=1, bias=not batch_norm))
            if smoothing is not None:
                layers.append(smoothing(width))
            layers += [nn.BatchNorm2d(width), act(width)] if batch_norm else [act(width)]
            channels = width
            if pool != "none" and index >= 1 and size >= 2:
                layers.append(nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2))
                size //= 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(width * size * size, hidden), act(hidden),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.head(self.features(x))


class MLP(nn.Module):
    def __init__(self, in_features: int, num_classes: int, act: Activations, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_features, hidden), act(hidden),
            nn.Linear(hidden, hidden), act(hidden), nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.net(x)


def resnet18(in_channels: int, num_classes: int, act: Activations,
             smoothing: Optional[Smoothing] = None) -> nn.Module:
    """torchvision's ResNet-18 with the CIFAR stem (3×3 conv, stride 1, no max-pool).

    With `smoothing`, every 3×3 conv `m` becomes nn.Sequential(m, GaussianSmoothing) (state_dict keys
    then read conv1.0.weight); the 1×1 downsample conv too only if smoothing.smooth_shortcut.
    """
    import torchvision  # here, not at the top: it costs seconds of every trial's start-up

    def smoothed(conv: nn.Conv2d) -> nn.Module:
        return conv if smoothing is None else nn.Sequential(conv, smoothing(conv.out_channels))

    model = torchvision.models.resnet18(num_classes=num_classes)
    model.conv1 = smoothed(nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False))
    model.maxpool = nn.Identity()
    model.relu = act(model.bn1.num_features)
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            # BasicBlock applies self.relu twice (after bn1 and after the residual add), both on
            # bn1.num_features channels, so one activation (one θ per channel) serves both.
            block.relu = act(block.bn1.num_features)
            block.conv1 = smoothed(block.conv1)
            block.conv2 = smoothed(block.conv2)
            if block.downsample is not None and smoothing is not None and smoothing.smooth_shortcut:
                block.downsample[0] = smoothed(block.downsample[0])
    return model


def build_model(name: str, in_channels: int, image_size: int, num_classes: int,
                act: Activations, width: int = 16, pool: str | bool = "max", batch_norm: bool = True,
                smoothing: Optional[Smoothing] = None) -> nn.Module:
    """The network `name`; `smoothing=None` builds exactly the network without Curriculum by Smoothing."""
    if name == "small_cnn":
        return SmallCNN(in_channels, num_classes, image_size, act, width=width, pool=pool,
                        batch_norm=batch_norm, smoothing=smoothing)
    if name == "mlp":
        if smoothing is not None:
            raise ValueError("smoothing: model 'mlp' has no convolution to smooth; use small_cnn or resnet18")
        return MLP(in_channels * image_size * image_size, num_classes, act, hidden=16 * width)
    if name == "resnet18":
        return resnet18(in_channels, num_classes, act, smoothing=smoothing)
    raise ValueError(f"model {name!r} is not allowed; choose small_cnn, mlp or resnet18")
