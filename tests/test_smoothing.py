"""Curriculum by Smoothing: the GaussianSmoothing layer, the `Smoothing` factory and where it goes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import ndimage

from trainer.models import Activations, GaussianSmoothing, Smoothing, build_model


def _inputs(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("sigma, kernel_size", [(0.5, 3), (1.0, 3), (1.0, 5), (2.0, 7), (0.01, 3)])
def test_taps_sum_to_one_are_symmetric_and_peak_in_the_middle(sigma, kernel_size):
    taps = GaussianSmoothing.taps(sigma, kernel_size)
    assert taps.shape == (kernel_size,)
    assert taps.sum().item() == pytest.approx(1.0, abs=1e-15)
    assert torch.equal(taps, taps.flip(0))
    middle = kernel_size // 2
    assert (taps[: middle + 1].diff() > 0).all() or sigma < 0.1  # rises to the middle (σ tiny: underflow)
    expected = np.exp(-np.arange(-middle, middle + 1) ** 2 / (2 * sigma**2))
    np.testing.assert_allclose(taps.numpy(), expected / expected.sum(), rtol=1e-12)


def _kernel_size_for(sigma, truncate=3.0):
    """An odd kernel holding ±ceil(truncate·σ): 0.5 → 5, 1 → 7, 2 → 13."""
    return 2 * math.ceil(truncate * sigma) + 1


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_impulse_response_matches_scipy_gaussian_filter(sigma):
    kernel_size = _kernel_size_for(sigma)
    radius = kernel_size // 2
    layer = GaussianSmoothing(1, kernel_size, sigma).double()
    impulse = np.zeros((25, 25))
    impulse[12, 12] = 1.0
    out = layer(torch.from_numpy(impulse)[None, None])[0, 0].numpy()
    expected = ndimage.gaussian_filter(impulse, sigma, truncate=radius / sigma, mode="constant")
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert out.sum() == pytest.approx(1.0)  # the kernel fits inside: nothing lost at the border


@pytest.mark.parametrize("sigma, kernel_size", [(1.0, 3), (0.8, 5)])
def test_zero_padding_is_scipy_constant_mode_everywhere(sigma, kernel_size):
    # Zero padding, as the authors' Conv2d(padding=r): scipy's mode="constant" (cval 0), borders included.
    image = _inputs((2, 3, 9, 11)).double()
    layer = GaussianSmoothing(3, kernel_size).double()
    layer.set_sigma(sigma)  # taps computed in float64 straight into the float64 buffer
    out = layer(image).numpy()
    radius = kernel_size // 2
    for n in range(2):
        for c in range(3):
            expected = ndimage.gaussian_filter(image[n, c].numpy(), sigma, truncate=radius / sigma,
                                               mode="constant")
            np.testing.assert_allclose(out[n, c], expected, atol=1e-12)


def test_sigma_zero_is_the_identity_and_returns_its_input():
    layer = GaussianSmoothing(4, 3)
    x = _inputs((2, 4, 5, 5))
    assert layer(x) is x
    layer.set_sigma(1.0)
    assert not torch.equal(layer(x), x)
    layer.set_sigma(0.0)
    assert layer(x) is x


def test_sigma_is_not_a_parameter_nor_in_the_state_dict():
    layer = GaussianSmoothing(4, 3, 1.0)
    assert list(layer.parameters()) == []
    assert layer.state_dict() == {}
    with pytest.raises(ValueError, match="sigma"):
        layer.set_sigma(-1.0)
    with pytest.raises(ValueError, match="odd"):
        GaussianSmoothing(4, 4)


def test_smoothing_keeps_dtype_memory_format_and_runs_under_bf16_autocast():
    layer = GaussianSmoothing(4, 3, 1.0).to(memory_format=torch.channels_last)
    x = _inputs((2, 4, 6, 6)).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    out = layer(x)
    assert out.shape == x.shape and out.is_contiguous(memory_format=torch.channels_last)
    out.sum().backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16
    assert layer(x.detach().bfloat16()).dtype == torch.bfloat16


def _leaf_order(model, x):
    """Leaf modules in the order their forward finished."""
    order, handles = [], []
    for module in model.modules():
        if not list(module.children()):
            handles.append(module.register_forward_hook(lambda m, i, o: order.append(m)))
    with torch.no_grad():
        model.eval()(x)
    for handle in handles:
        handle.remove()
    return order


def _convs_and_successors(model, x):
    order = _leaf_order(model, x)
    return [(m, order[i + 1]) for i, m in enumerate(order) if isinstance(m, nn.Conv2d)]


_MODELS = [("small_cnn", (2, 1, 8, 8), 3), ("resnet18", (1, 3, 32, 32), 17)]


@pytest.mark.parametrize("name, shape, n_convs", _MODELS)
def test_every_conv_is_followed_by_a_smoothing(name, shape, n_convs):
    plain = build_model(name, shape[1], shape[2], 10, Activations())
    assert not any(isinstance(m, GaussianSmoothing) for m in plain.modules())
    assert not all(isinstance(nxt, GaussianSmoothing) for _, nxt in _convs_and_successors(plain, _inputs(shape)))

    smoothing = Smoothing(3)
    model = build_model(name, shape[1], shape[2], 10, Activations(), smoothing=smoothing)
    pairs = _convs_and_successors(model, _inputs(shape))
    smoothed = [conv for conv, nxt in pairs if isinstance(nxt, GaussianSmoothing)]
    unsmoothed = [conv for conv, nxt in pairs if not isinstance(nxt, GaussianSmoothing)]
    # The authors' ResNet (pairlab/CBS resnet.py) smooths every 3×3 conv, not the shortcut's 1×1 conv.
    assert len(smoothed) == n_convs == len(smoothing.layers)
    assert all(conv.kernel_size == (1, 1) for conv in unsmoothed)
    assert len(unsmoothed) == (3 if name == "resnet18" else 0)
    assert all(layer.channels == conv.out_channels for conv, layer in pairs if isinstance(layer, GaussianSmoothing))

    everywhere = Smoothing(3, smooth_shortcut=True)
    model = build_model(name, shape[1], shape[2], 10, Activations(), smoothing=everywhere)
    assert all(isinstance(nxt, GaussianSmoothing) for _, nxt in _convs_and_successors(model, _inputs(shape)))


_SMALL_CNN_KEYS = [  # today's network, before Curriculum by Smoothing existed
    "features.0.weight", *(f"features.1.{k}" for k in ("weight", "bias", "running_mean", "running_var",
                                                        "num_batches_tracked")),
    "features.3.weight", *(f"features.4.{k}" for k in ("weight", "bias", "running_mean", "running_var",
                                                        "num_batches_tracked")),
    "features.7.weight", *(f"features.8.{k}" for k in ("weight", "bias", "running_mean", "running_var",
                                                        "num_batches_tracked")),
    "head.1.weight", "head.1.bias", "head.3.weight", "head.3.bias",
]


@pytest.mark.parametrize("name, shape, n_convs", _MODELS)
def test_no_smoothing_builds_todays_network_and_sigma_zero_changes_nothing(name, shape, n_convs):
    torch.manual_seed(0)
    plain = build_model(name, shape[1], shape[2], 10, Activations("scheduled"))
    torch.manual_seed(0)
    explicit = build_model(name, shape[1], shape[2], 10, Activations("scheduled"), smoothing=None)
    torch.manual_seed(0)
    smoothing = Smoothing(3)
    smoothed = build_model(name, shape[1], shape[2], 10, Activations("scheduled"), smoothing=smoothing)
    assert [type(m) for m in plain.modules()] == [type(m) for m in explicit.modules()]
    keys = list(plain.state_dict())
    assert keys == list(explicit.state_dict())
    if name == "small_cnn":
        assert keys == _SMALL_CNN_KEYS
    else:
        assert "conv1.weight" in keys and "layer2.0.conv1.weight" in keys and "layer2.0.downsample.0.weight" in keys
        assert "conv1.0.weight" in smoothed.state_dict() and "layer2.0.downsample.0.weight" in smoothed.state_dict()
    # Same seed, same weights (smoothing draws no random numbers); at σ = 0 the same outputs.
    assert len(smoothed.state_dict()) == len(keys)  # σ and the taps are not in the state_dict
    for a, b in zip(plain.state_dict().values(), smoothed.state_dict().values()):
        assert torch.equal(a, b)
    x = _inputs(shape)
    with torch.no_grad():
        reference = plain.eval()(x)
        assert torch.equal(explicit.eval()(x), reference)
        assert torch.equal(smoothed.eval()(x), reference)
        smoothing.set_sigma(1.0)
        assert all(layer.sigma == 1.0 for layer in smoothing.layers)
        assert not torch.allclose(smoothed(x), reference)
        smoothing.set_sigma(0.0)
        assert torch.equal(smoothed(x), reference)


def test_smoothing_an_mlp_is_refused():
    with pytest.raises(ValueError, match="smoothing"):
        build_model("mlp", 1, 8, 10, Activations(), smoothing=Smoothing())


def test_small_cnn_trains_with_smoothing_on_channels_last():
    torch.manual_seed(0)
    smoothing = Smoothing(3)
    model = build_model("small_cnn", 1, 8, 10, Activations("scheduled"), smoothing=smoothing)
    model = model.to(memory_format=torch.channels_last)
    smoothing.set_sigma(1.0)
    x = _inputs((8, 1, 8, 8)).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nn.functional.cross_entropy(model(x).float(), torch.arange(8))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


# --- found missing by mutation testing (mutation/run.sh) -----------------------------------------

def test_default_kernel_is_3_and_a_kernel_of_1_is_the_identity():
    # The authors' default side is 3; a side of 1 is odd and positive, so allowed: radius 0, no blur.
    assert GaussianSmoothing(4).kernel_size == 3 and Smoothing().kernel_size == 3
    layer = GaussianSmoothing(2, 1, sigma=1.0)
    x = _inputs((1, 2, 5, 5))
    assert layer.sigma == 1.0 and layer(x) is x
    assert Smoothing(1)(2)(x) is x


@pytest.mark.parametrize("kernel_size", [4, 2, 0, -1, -3])
def test_even_or_non_positive_kernels_are_refused_by_the_factory_and_the_layer(kernel_size):
    with pytest.raises(ValueError) as caught:
        Smoothing(kernel_size)
    assert str(caught.value) == f"smoothing kernel_size must be odd and positive (3, 5, ...), got {kernel_size}"
    with pytest.raises(ValueError, match=f"kernel_size must be odd and positive .*got {kernel_size}$"):
        GaussianSmoothing(4, kernel_size)


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_taps_at_sigma_zero_are_the_unit_impulse(kernel_size):
    taps = GaussianSmoothing.taps(0.0, kernel_size)
    assert taps.dtype == torch.float64
    assert taps.tolist() == [1.0 if k == kernel_size // 2 else 0.0 for k in range(kernel_size)]


def test_layers_built_after_set_sigma_smooth_with_that_sigma():
    smoothing = Smoothing(3)
    smoothing.set_sigma(0.7)
    model = build_model("small_cnn", 1, 8, 10, Activations(), smoothing=smoothing)
    assert len(smoothing.layers) == 3
    assert all(layer.sigma == 0.7 and layer.active for layer in smoothing.layers)
    expected = torch.outer(GaussianSmoothing.taps(0.7, 3), GaussianSmoothing.taps(0.7, 3)).float()
    assert all(torch.equal(layer.kernel[0, 0], expected) for layer in smoothing.layers)
    assert model(_inputs((2, 1, 8, 8))).shape == (2, 10)


def test_smoothing_an_mlp_is_refused_naming_the_argument():
    with pytest.raises(ValueError) as caught:
        build_model("mlp", 1, 8, 10, Activations(), smoothing=Smoothing(3))
    assert str(caught.value) == "smoothing: model 'mlp' has no convolution to smooth; use small_cnn or resnet18"
