"""The annealed activation, the θ owner `Activations`, and the networks built on them."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from study.models import THETA_MAX, Activations, AnnealedActivation, build_model


def _inputs(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_theta_pi_over_4_is_the_identity():
    x = _inputs((4, 5, 6, 6))
    out = AnnealedActivation(torch.tensor(math.pi / 4))(x)
    torch.testing.assert_close(out, x)


def test_theta_zero_is_exactly_relu():
    x = _inputs((4, 5, 6, 6))
    out = AnnealedActivation(torch.tensor(0.0))(x)
    assert torch.equal(out, F.relu(x))


def test_intermediate_theta_is_a_leaky_relu_with_slope_tan_theta():
    x = _inputs((3, 7))
    theta = 0.3
    out = AnnealedActivation(torch.tensor(theta))(x)
    torch.testing.assert_close(out, torch.where(x > 0, x, x * math.tan(theta)))


def test_per_channel_theta_broadcasts_over_channels():
    x = _inputs((2, 3, 4, 4))
    out = AnnealedActivation(nn.Parameter(torch.tensor([0.0, math.pi / 4, 0.0])))(x)
    assert torch.equal(out[:, 0], F.relu(x[:, 0]))
    torch.testing.assert_close(out[:, 1], x[:, 1])
    assert torch.equal(out[:, 2], F.relu(x[:, 2]))


def _small_cnn(mode, theta0=THETA_MAX):
    torch.manual_seed(0)
    act = Activations(mode, theta0)
    return act, build_model("small_cnn", 1, 8, 10, act)


def _loss(model, seed=0):
    x = _inputs((32, 1, 8, 8), seed)
    y = torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(seed))
    return F.cross_entropy(model(x), y)


@pytest.mark.parametrize("theta0", [THETA_MAX, 0.5])
def test_trainable_theta_gets_a_gradient(theta0):
    # θ0 = π/4 (the default) included: the clamp in forward must not cut the gradient at its bound.
    act, model = _small_cnn("trainable", theta0)
    assert isinstance(act.shared, nn.Parameter)
    assert any(p is act.shared for p in model.parameters())
    assert all(layer.theta is act.shared for layer in act.layers)  # one θ shared by every layer
    _loss(model).backward()
    assert act.shared.grad is not None
    assert act.shared.grad.abs().item() > 0


def test_clamp_keeps_trainable_theta_in_range_after_a_huge_step():
    act, model = _small_cnn("trainable")
    for lr_sign in (1.0, -1.0):  # push θ out on both sides
        optimizer = torch.optim.SGD([act.shared], lr=1e6)
        optimizer.zero_grad()
        (lr_sign * _loss(model)).backward()
        optimizer.step()
        assert not 0.0 <= act.shared.item() <= THETA_MAX  # the step really left the range
        act.clamp_()
        assert 0.0 <= act.shared.item() <= THETA_MAX + 1e-7
        assert act.shared.item() in (pytest.approx(0.0), pytest.approx(THETA_MAX))


def test_trainable_channel_has_one_theta_per_channel_per_layer():
    act, model = _small_cnn("trainable_channel")
    thetas = act.thetas()
    assert [tuple(t.shape) for t in thetas] == [(16,), (16,), (16,), (64,)]  # 3 convs, 1 hidden
    assert len({id(t) for t in thetas}) == len(thetas)
    assert all(isinstance(t, nn.Parameter) for t in thetas)
    params = {id(p) for p in model.parameters()}
    assert all(id(t) in params for t in thetas)
    _loss(model).backward()
    assert all(t.grad is not None and t.grad.shape == t.shape for t in thetas)
    assert any(t.grad.abs().sum() > 0 for t in thetas)
    with torch.no_grad():
        thetas[0][:4] = -1.0
        thetas[3][:4] = 2.0
    act.clamp_()
    values = torch.cat([t.detach() for t in thetas])
    assert values.min() >= 0.0 and values.max() <= THETA_MAX + 1e-7


def _count(model, kind):
    return sum(isinstance(module, kind) for module in model.modules())


@pytest.mark.parametrize("name, channels, size", [("small_cnn", 1, 8), ("mlp", 1, 8), ("resnet18", 3, 32)])
def test_annealing_replaces_every_relu(name, channels, size):
    plain = build_model(name, channels, size, 10, Activations("relu"))
    assert _count(plain, nn.ReLU) > 0  # the check below can fail
    for mode in ("scheduled", "trainable", "trainable_channel"):
        act = Activations(mode)
        model = build_model(name, channels, size, 10, act)
        assert _count(model, nn.ReLU) == 0, mode
        assert _count(model, AnnealedActivation) == len(act.layers) > 0


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (2, 1, 28, 28)])
def test_resnet18_forward(shape):
    torch.manual_seed(0)
    act = Activations("scheduled")
    model = build_model("resnet18", shape[1], shape[2], 10, act).eval()
    with torch.no_grad():
        out = model(_inputs(shape))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["small_cnn", "mlp"])
def test_set_theta_changes_the_output(name):
    torch.manual_seed(0)
    act = Activations("scheduled")
    model = build_model(name, 1, 8, 10, act).eval()
    x = _inputs((4, 1, 8, 8))
    with torch.no_grad():
        linear = model(x)
        act.set_theta(0.0)
        relu = model(x)
    assert all(layer.theta.item() == 0.0 for layer in act.layers)
    assert not torch.allclose(linear, relu)
    assert act.summary() == {"theta": 0.0, "theta_min": 0.0, "theta_max": 0.0}
    # θ = 0 must match the same weights with plain ReLUs.
    torch.manual_seed(0)
    plain = build_model(name, 1, 8, 10, Activations("relu")).eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(x), relu)


def test_scheduled_theta_is_not_in_the_state_dict():
    act, model = _small_cnn("scheduled")
    assert not any("theta" in key for key in model.state_dict())
    act_t, model_t = _small_cnn("trainable")
    assert any("theta" in key for key in model_t.state_dict())


def test_unknown_activation_mode_raises():
    with pytest.raises(ValueError, match="nope"):
        Activations("nope")
