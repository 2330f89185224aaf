"""full: every method and control on MNIST, Fashion-MNIST and CIFAR-10 (one search per dataset)."""

from .common import SpaceSettings

SETTINGS = SpaceSettings(
    name="full",
    description="all methods and controls; MNIST/Fashion-MNIST small CNN, CIFAR-10 ResNet-18; 20 epochs",
    datasets=("mnist", "fashion_mnist", "cifar10"),
    models={"mnist": "small_cnn", "fashion_mnist": "small_cnn", "cifar10": "resnet18"},
    epochs=20,
    num_samples=30,  # per searched method (6 of them)
    seed_repeats=10,
    K_range=(4, 8),
    epochs_per_level_range=(1, 2),
    batch_sizes=(64, 128, 256),
)

