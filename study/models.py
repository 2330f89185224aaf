"""The annealed activation and the networks.

a_θ(x) = max(x·tan θ, x) with θ ∈ [0, π/4]: θ = π/4 makes it the identity (the whole network is
linear), θ = 0 makes it ReLU. Every network here takes an `Activations` factory, so turning
annealing on replaces every ReLU without touching the architecture.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

THETA_MAX = math.pi / 4


class AnnealedActivation(nn.Module):
    """max(x·tan θ, x). `theta` is a shared scalar buffer/parameter or a per-channel parameter."""

    def __init__(self, theta: torch.Tensor):
        super().__init__()
        if isinstance(theta, nn.Parameter):
            self.theta = theta
        else:
            # A scheduled θ is owned by `Activations` and written in place; not checkpointed,
            # because it is a pure function of the step.
            self.register_buffer("theta", theta, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Clamp the value but keep the gradient on the whole closed range: Tensor.clamp passes
        # no gradient at its bounds, which froze a trainable θ started at θ0 = π/4 for good.
        theta = self.theta
        theta = torch.where((theta >= 0.0) & (theta <= THETA_MAX), theta, theta.clamp(0.0, THETA_MAX))
        if theta.dim() == 1:  # one θ per channel: broadcast over (N, C, ...)
            theta = theta.view(1, -1, *([1] * (x.dim() - 2)))
        return torch.maximum(x * torch.tan(theta).to(x.dtype), x)


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
        for layer in self.layers:
            layer.theta.fill_(value)

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


class SmallCNN(nn.Module):
    """Three conv layers of `width` filters (as in the ConvexityAnnealing reference), a dense head."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int, act: Activations,
                 width: int = 16, pool: bool = True, hidden: int = 64, batch_norm: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        size = image_size
        channels = in_channels
        for index in range(3):
            # BatchNorm is our addition to the reference net: without it, 6-epoch digits runs
            # stalled at chance for some seeds and learning rates (measured: val_acc 0.24-0.55
            # vs 0.95-0.97 with it, 3 seeds x 5 methods), which would drown the curriculum effect.
            conv = nn.Conv2d(channels, width, 3, padding=1, bias=not batch_norm)
            layers += [conv, nn.BatchNorm2d(width), act(width)] if batch_norm else [conv, act(width)]
            channels = width
            if pool and index >= 1 and size >= 2:
                layers.append(nn.MaxPool2d(2))
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


def resnet18(in_channels: int, num_classes: int, act: Activations) -> nn.Module:
    """torchvision's ResNet-18 with the CIFAR stem (3×3 conv, stride 1, no max-pool)."""
    import torchvision  # here, not at the top: it costs seconds of every trial's start-up

    model = torchvision.models.resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    model.relu = act(model.bn1.num_features)
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            # BasicBlock applies self.relu twice (after bn1 and after the residual add), both on
            # bn1.num_features channels, so one activation (one θ per channel) serves both.
            block.relu = act(block.bn1.num_features)
    return model


def build_model(name: str, in_channels: int, image_size: int, num_classes: int,
                act: Activations, width: int = 16, pool: bool = True, batch_norm: bool = True) -> nn.Module:
    if name == "small_cnn":
        return SmallCNN(in_channels, num_classes, image_size, act, width=width, pool=pool,
                        batch_norm=batch_norm)
    if name == "mlp":
        return MLP(in_channels * image_size * image_size, num_classes, act, hidden=16 * width)
    if name == "resnet18":
        return resnet18(in_channels, num_classes, act)
    raise ValueError(f"model {name!r} is not allowed; choose small_cnn, mlp or resnet18")
