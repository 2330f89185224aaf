"""The annealed activation, the θ owner `Activations`, and the networks built on them."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from trainer.models import MLP, THETA_MAX, Activations, AnnealedActivation, SmallCNN, build_model


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


# --- the fast paths against the definition where(x < 0, x·tan θ, x) ---------------------------------

def _reference(x, theta):
    """The definition, on a tensor θ (shape () or (C,)), with autograd's one-sided gradients."""
    if theta.dim() == 1:
        theta = theta.view(1, -1, *([1] * (x.dim() - 2)))
    return torch.where(x < 0, x * torch.tan(theta).to(x.dtype), x)


def _nonzero_inputs(shape, dtype, seed=0):
    x = _inputs(shape, seed).to(dtype)
    assert (x != 0).all()  # x = 0 exactly is the one point where the conventions may differ
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("theta", [0.0, 0.3, THETA_MAX])
def test_scheduled_fast_path_matches_the_definition(theta, dtype):
    act = Activations("scheduled")
    layer = act(5)
    act.set_theta(theta)
    x = _nonzero_inputs((4, 5, 6, 6), dtype).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    grad = _inputs((4, 5, 6, 6), 1).to(dtype)
    out, ref = layer(x), _reference(x_ref, torch.tensor(theta))
    out.backward(grad)
    ref.backward(grad)
    assert out.dtype == dtype
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(x.grad, x_ref.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("theta", [0.0, 0.3, THETA_MAX])
@pytest.mark.parametrize("per_channel", [False, True])
def test_learned_path_matches_the_definition(theta, dtype, per_channel):
    shape = (4, 5, 6, 6)
    theta0 = torch.full((5,), theta) if per_channel else torch.tensor(theta)
    layer = AnnealedActivation(nn.Parameter(theta0.clone()))
    theta_ref = theta0.clone().requires_grad_(True)
    x = _nonzero_inputs(shape, dtype).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    grad = _inputs(shape, 1).to(dtype)
    out, ref = layer(x), _reference(x_ref, theta_ref)
    out.backward(grad)
    ref.backward(grad)
    assert out.dtype == dtype and layer.theta.grad.dtype == torch.float32
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(x.grad, x_ref.grad)
    # The θ gradient: ours sums in fp32, the definition's in the input's dtype.
    tol = dict(rtol=2e-2, atol=2e-2) if dtype == torch.bfloat16 else {}
    torch.testing.assert_close(layer.theta.grad, theta_ref.grad, **tol)


def _bits(t):
    return t.view(torch.int32)


def test_scheduled_theta_zero_is_relu_bit_for_bit_values_and_gradients():
    act = Activations("scheduled")
    layer = act(5)
    act.set_theta(0.0)
    x = _inputs((4, 5, 6, 6)).requires_grad_(True)
    x_relu = x.detach().clone().requires_grad_(True)
    grad = _inputs((4, 5, 6, 6), 1)
    out, ref = layer(x), F.relu(x_relu)
    out.backward(grad)
    ref.backward(grad)
    assert torch.equal(_bits(out), _bits(ref))
    assert torch.equal(_bits(x.grad), _bits(x_relu.grad))


_KINK_X = [-2.0, -1.0, 3.0, -3.0, 1.0]


def _one_sided_difference(loss_at, theta, h=1e-7):
    return (loss_at(theta) - loss_at(theta - h)) / h


def test_learned_theta_gradient_at_pi_over_4_is_one_sided():
    # torch.maximum split the tie at θ = π/4 and gave −2.0 here; the left derivative is
    # Σ_{x<0} x·sec²(π/4) = −6·2 = −12.
    x = torch.tensor(_KINK_X, dtype=torch.float64)
    theta = nn.Parameter(torch.tensor(THETA_MAX, dtype=torch.float64))
    AnnealedActivation(theta)(x).sum().backward()

    def loss_at(value):
        with torch.no_grad():
            return AnnealedActivation(nn.Parameter(torch.tensor(value, dtype=torch.float64)))(x).sum().item()

    expected = _one_sided_difference(loss_at, THETA_MAX)
    assert expected == pytest.approx(-12.0, rel=1e-5)
    assert theta.grad.item() == pytest.approx(expected, rel=1e-5)
    # The shared θ of a float32 network gets the same number (there tan(π/4) rounds to 1: a real tie).
    theta32 = nn.Parameter(torch.tensor(THETA_MAX))
    AnnealedActivation(theta32)(x.float()).sum().backward()
    assert theta32.grad.item() == pytest.approx(-12.0, rel=1e-5)


def test_learned_per_channel_theta_gradient_at_pi_over_4_is_one_sided():
    x = torch.tensor([_KINK_X, [1.0, -4.0, 2.0, -0.5, 3.0]], dtype=torch.float64).unsqueeze(0)  # (1, C=2, 5)
    theta = nn.Parameter(torch.full((2,), THETA_MAX, dtype=torch.float64))
    AnnealedActivation(theta)(x).sum().backward()
    for channel in range(2):
        def loss_at(value, channel=channel):
            values = torch.full((2,), THETA_MAX, dtype=torch.float64)
            values[channel] = value
            with torch.no_grad():
                return AnnealedActivation(nn.Parameter(values))(x).sum().item()
        expected = _one_sided_difference(loss_at, THETA_MAX)
        assert theta.grad[channel].item() == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(theta.grad, torch.tensor([-12.0, -9.0], dtype=torch.float64))
    # In float32 tan(π/4) rounds to exactly 1: a real tie, where torch.maximum split the gradient.
    theta32 = nn.Parameter(torch.full((2,), THETA_MAX))
    AnnealedActivation(theta32)(x.float()).sum().backward()
    torch.testing.assert_close(theta32.grad, torch.tensor([-12.0, -9.0]))


def test_learned_theta_gradient_inside_the_range_matches_a_central_difference():
    x = _inputs((3, 4, 5), 2).double()
    theta = nn.Parameter(torch.tensor([0.1, 0.3, 0.5, 0.7], dtype=torch.float64))
    weights = _inputs((3, 4, 5), 3).double()
    (AnnealedActivation(theta)(x) * weights).sum().backward()
    h = 1e-6
    for channel in range(4):
        def loss_at(value, channel=channel):
            values = theta.detach().clone()
            values[channel] = value
            with torch.no_grad():
                return (AnnealedActivation(nn.Parameter(values))(x) * weights).sum().item()
        value = theta[channel].item()
        expected = (loss_at(value + h) - loss_at(value - h)) / (2 * h)
        assert theta.grad[channel].item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("outside, inside", [(1.2, THETA_MAX), (-0.3, 0.0)])
def test_theta_outside_its_range_behaves_as_clamped(outside, inside):
    x = _nonzero_inputs((4, 5, 6, 6), torch.float32)
    act = Activations("scheduled")
    layer = act(5)
    act.set_theta(outside)
    expected = _reference(x, torch.tensor(inside))
    assert torch.equal(layer(x), expected)
    learned = AnnealedActivation(nn.Parameter(torch.tensor(outside)))
    out = learned(x)
    assert torch.equal(out, expected)
    out.sum().backward()
    assert learned.theta.grad.item() == 0.0  # clamp's gradient outside; Activations.clamp_ pulls θ back
    per_channel = AnnealedActivation(nn.Parameter(torch.tensor([outside, 0.3, outside, 0.3, inside])))
    torch.testing.assert_close(per_channel(x), _reference(x, torch.tensor([inside, 0.3, inside, 0.3, inside])))


def test_a_direct_write_to_the_scheduled_buffer_is_noticed():
    act = Activations("scheduled")
    layer = act(5)
    x = _inputs((2, 5, 3, 3))
    assert torch.equal(layer(x), x)
    with torch.no_grad():
        layer.theta.fill_(0.0)  # not through set_theta
    assert torch.equal(layer(x), F.relu(x))


@pytest.mark.parametrize("mode", ["scheduled", "trainable", "trainable_channel"])
def test_bf16_autocast_training_step(mode):
    act, model = _small_cnn(mode, 0.5)
    model = model.to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = _loss(model)
    loss.backward()
    assert torch.isfinite(loss)
    for theta in act.thetas():
        if isinstance(theta, nn.Parameter):
            assert theta.grad.dtype == torch.float32 and torch.isfinite(theta.grad).all()
            assert theta.grad.abs().sum() > 0


def test_torch_compile_follows_set_theta_without_recompiling():
    from torch._dynamo.testing import CompileCounter

    torch.manual_seed(0)
    act = Activations("scheduled")
    model = build_model("small_cnn", 1, 8, 10, act)
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter)
    x = _inputs((4, 1, 8, 8))
    for theta in (THETA_MAX, 0.5, 0.1, 0.0):
        act.set_theta(theta)
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), model(x))
    assert counter.frame_count == 1


# --- pooling: "linear at π/4" --------------------------------------------------------------------

def _additivity_error(model, shape):
    """max |g(a + b) − g(a) − g(b)| for g(x) = f(x) − f(0): 0 for an affine f."""
    a, b = _inputs(shape, 1).double(), _inputs(shape, 2).double()
    zero = torch.zeros(shape, dtype=torch.float64)
    with torch.no_grad():
        f0 = model(zero)
        g = lambda x: model(x) - f0  # noqa: E731
        return (g(a + b) - g(a) - g(b)).abs().max().item()


def _linear_at_pi_over_4(name, pool, size=8, smoothing=None):
    torch.manual_seed(0)
    act = Activations("scheduled")  # θ0 = π/4
    model = build_model(name, 1, size, 10, act, pool=pool, smoothing=smoothing).double()
    if smoothing is not None:
        smoothing.set_sigma(1.0)
    with torch.no_grad():  # give BatchNorm running statistics that are not the identity
        model.train()(_inputs((16, 1, size, size), 4).double() * 3 + 1)
    return model.eval()


@pytest.mark.parametrize("name, pool", [("small_cnn", "avg"), ("small_cnn", "none"), ("mlp", "max")])
def test_network_is_affine_at_pi_over_4(name, pool):
    assert _additivity_error(_linear_at_pi_over_4(name, pool), (4, 1, 8, 8)) < 1e-9


def test_avg_pool_network_with_smoothing_is_affine_at_pi_over_4():
    from trainer.models import Smoothing

    model = _linear_at_pi_over_4("small_cnn", "avg", smoothing=Smoothing(3))
    assert _additivity_error(model, (4, 1, 8, 8)) < 1e-9


def test_max_pool_network_is_not_affine_at_pi_over_4():
    assert _additivity_error(_linear_at_pi_over_4("small_cnn", "max"), (4, 1, 8, 8)) > 1e-3


@pytest.mark.parametrize("pool, kind, count", [("max", nn.MaxPool2d, 2), (True, nn.MaxPool2d, 2),
                                               ("avg", nn.AvgPool2d, 2), ("none", None, 0), (False, None, 0)])
def test_pool_choice(pool, kind, count):
    model = build_model("small_cnn", 1, 28, 10, Activations(), pool=pool)
    pools = [m for m in model.modules() if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    assert len(pools) == count and all(isinstance(m, kind) for m in pools)
    assert model.head[1].in_features == 16 * (7 if count else 28) ** 2
    assert model(_inputs((2, 1, 28, 28))).shape == (2, 10)


def test_unknown_pool_raises():
    with pytest.raises(ValueError, match="pool 'min'"):
        build_model("small_cnn", 1, 8, 10, Activations(), pool="min")


# --- found missing by mutation testing (mutation/run.sh) -----------------------------------------

def test_theta_pi_over_4_is_the_identity_exactly_in_float64():
    # tan(π/4) is 1 − 2⁻⁵³ in floating point: the slope must be exactly 1 there, or a float64
    # network at θ0 = π/4 would not be the linear one it is said to be.
    x = _inputs((4, 5, 6, 6)).double()
    assert math.tan(THETA_MAX) != 1.0
    act = Activations("scheduled")
    layer = act(5)
    assert torch.equal(layer(x), x)
    act.set_theta(THETA_MAX)
    assert torch.equal(layer(x), x)
    act.set_theta(0.0)
    assert torch.equal(layer(x), F.relu(x))


@pytest.mark.parametrize("theta", [0.0, 0.3, THETA_MAX])
def test_gradient_at_exactly_zero_is_tan_theta_on_every_path(theta):
    # The documented convention (F.leaky_relu's): d a_θ(x)/dx at x = 0 is tan θ — 0 at θ = 0, as
    # F.relu; the scheduled and learned eager paths and `reference` (the torch.compile path) agree.
    slope = 0.0 if theta == 0.0 else 1.0 if theta == THETA_MAX else math.tan(theta)
    act = Activations("scheduled")
    paths = {"scheduled": act(3), "learned": AnnealedActivation(nn.Parameter(torch.tensor(theta)))}
    act.set_theta(theta)
    for name, layer in [*paths.items(), ("reference", paths["learned"].reference)]:
        x = torch.zeros(2, 3, 2, 2, requires_grad=True)
        layer(x).sum().backward()
        torch.testing.assert_close(x.grad, torch.full_like(x, slope), msg=name)


@pytest.mark.parametrize("shape", [(4, 5, 3, 3), (4, 5), (2, 5, 7)])
def test_reference_with_one_theta_per_channel_matches_the_definition(shape):
    # `reference` is what runs under torch.compile: θ per channel broadcasts over dim 1 whatever x's rank.
    x = _nonzero_inputs(shape, torch.float32)
    thetas = torch.tensor([0.0, 0.2, 0.5, THETA_MAX, 1.3])  # the last outside the range: clamped
    layer = AnnealedActivation(nn.Parameter(thetas.clone()))
    out = layer.reference(x)
    assert out.shape == x.shape
    slopes = torch.tan(thetas.clamp(0.0, THETA_MAX)).view(1, -1, *([1] * (len(shape) - 2)))
    torch.testing.assert_close(out, torch.where(x > 0, x, x * slopes))
    shared = AnnealedActivation(nn.Parameter(torch.tensor(0.4)))
    torch.testing.assert_close(shared.reference(x), torch.where(x > 0, x, x * math.tan(0.4)))
    assert layer.reference(x.bfloat16()).dtype == torch.bfloat16  # keeps the input's dtype


def test_scheduled_theta_works_in_a_model_built_under_inference_mode():
    # Inference tensors keep no version counter: only set_theta updates the cached slope there.
    x = _inputs((2, 5, 3, 3))
    with torch.inference_mode():
        act = Activations("scheduled")
        layer = act(5)
        assert torch.equal(layer(x), x)
        act.set_theta(0.0)
        assert torch.equal(layer(x), F.relu(x))
        act.set_theta(0.3)
        torch.testing.assert_close(layer(x), torch.where(x > 0, x, x * math.tan(0.3)))


def test_learned_theta_gives_input_gradients_when_theta_is_frozen():
    # A learned θ with requires_grad off (frozen, or saliency w.r.t. the input): dx is still exact.
    x = _nonzero_inputs((3, 5, 4, 4), torch.float32).requires_grad_(True)
    for theta in (nn.Parameter(torch.tensor(0.3), requires_grad=False),
                  nn.Parameter(torch.linspace(0.0, THETA_MAX, 5), requires_grad=False)):
        x.grad = None
        AnnealedActivation(theta)(x).sum().backward()
        slopes = torch.tan(theta.detach()).view(1, -1, 1, 1) if theta.dim() else torch.tan(theta.detach())
        torch.testing.assert_close(x.grad, torch.where(x > 0, torch.ones_like(x), slopes.expand_as(x)))
        assert theta.grad is None


def test_learned_theta_gradient_sums_in_float32_for_bfloat16_activations():
    # 257 negative inputs of −1: d/d slope = Σ x·g = −257, which bf16 would round to −256.
    x = torch.full((1, 1, 257), -1.0, dtype=torch.bfloat16)
    for theta in (nn.Parameter(torch.tensor(0.3)), nn.Parameter(torch.tensor([0.3]))):
        AnnealedActivation(theta)(x).sum().backward()
        expected = -257.0 / math.cos(0.3) ** 2  # d tan θ/dθ = sec²θ
        assert theta.grad.dtype == torch.float32
        assert theta.grad.sum().item() == pytest.approx(expected, rel=1e-6)


def test_clamp_sets_each_theta_to_the_nearest_bound():
    act = Activations("trainable_channel", 0.5)
    build_model("small_cnn", 1, 8, 10, act)
    thetas = act.thetas()
    with torch.no_grad():
        thetas[0].copy_(torch.linspace(-1.0, 2.0, 16))
    before = thetas[0].detach().clone()
    act.clamp_()
    torch.testing.assert_close(thetas[0].detach(), before.clamp(0.0, THETA_MAX), rtol=0, atol=0)
    assert thetas[0][0].item() == 0.0 and thetas[0][-1].item() == pytest.approx(THETA_MAX)
    assert all(torch.equal(t.detach(), torch.full_like(t, 0.5)) for t in thetas[1:])  # inside: untouched
    shared = Activations("trainable", 0.5)
    build_model("mlp", 1, 8, 10, shared)
    for value, expected in ((-0.2, 0.0), (0.3, 0.3), (1.0, THETA_MAX)):
        with torch.no_grad():
            shared.shared.fill_(value)
        shared.clamp_()
        assert shared.shared.item() == pytest.approx(expected, abs=1e-7)


def test_summary_is_the_mean_min_and_max_of_the_clamped_thetas():
    assert Activations("relu").summary() == {"theta": 0.0, "theta_min": 0.0, "theta_max": 0.0}
    relu = Activations("relu")
    build_model("small_cnn", 1, 8, 10, relu)
    assert relu.layers == [] and relu.summary() == {"theta": 0.0, "theta_min": 0.0, "theta_max": 0.0}
    scheduled = Activations("scheduled")
    build_model("small_cnn", 1, 8, 10, scheduled)
    scheduled.set_theta(0.25)
    assert scheduled.summary() == pytest.approx({"theta": 0.25, "theta_min": 0.25, "theta_max": 0.25})
    per_channel = Activations("trainable_channel", 0.5)
    build_model("mlp", 1, 8, 10, per_channel, width=1)  # two layers of 16 θ each
    with torch.no_grad():
        per_channel.thetas()[0].copy_(torch.linspace(-0.5, 1.5, 16))  # outside the range at both ends
    values = torch.cat([t.detach().reshape(-1) for t in per_channel.thetas()]).clamp(0.0, THETA_MAX)
    summary = per_channel.summary()
    assert summary["theta_min"] == 0.0 and summary["theta_max"] == pytest.approx(THETA_MAX)
    assert summary["theta"] == pytest.approx(values.mean().item(), rel=1e-6)


def test_only_scheduled_and_trainable_modes_share_one_theta():
    assert Activations("relu").shared is None
    assert Activations("trainable_channel").shared is None
    assert isinstance(Activations("scheduled").shared, torch.Tensor)
    assert isinstance(Activations("trainable").shared, nn.Parameter)


def test_small_cnn_defaults_and_widths():
    # The reference net: three 16-filter 3×3 convolutions, BatchNorm, 2×2 max-pools, a 64-unit head.
    model = SmallCNN(1, 10, 8, Activations())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 16, 16] and all(c.bias is None for c in convs)
    assert _count(model, nn.BatchNorm2d) == 3 and _count(model, nn.MaxPool2d) == 2
    assert model.head[1].out_features == 64
    narrow = build_model("small_cnn", 1, 8, 10, Activations(), width=8)
    assert [m.out_channels for m in narrow.modules() if isinstance(m, nn.Conv2d)] == [8, 8, 8]
    assert narrow.head[1].in_features == 8 * 2 * 2


@pytest.mark.parametrize("mode", ["relu", "trainable_channel"])
def test_small_cnn_without_batch_norm(mode):
    act = Activations(mode)
    model = build_model("small_cnn", 1, 8, 10, act, batch_norm=False)
    assert _count(model, nn.BatchNorm2d) == 0
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))  # no BN: conv bias
    if mode == "trainable_channel":
        assert [tuple(t.shape) for t in act.thetas()] == [(16,), (16,), (16,), (64,)]
    assert model(_inputs((2, 1, 8, 8))).shape == (2, 10)


@pytest.mark.parametrize("size, pooled", [(2, 1), (3, 1), (4, 1), (5, 1), (8, 2), (1, 1)])
def test_small_cnn_pools_while_the_map_has_two_pixels(size, pooled):
    # Max-pool after the 2nd and 3rd conv, each only while the map is at least 2 pixels wide.
    model = build_model("small_cnn", 1, size, 10, Activations())
    assert model.head[1].in_features == 16 * pooled * pooled
    assert model(_inputs((2, 1, size, size))).shape == (2, 10)


def test_mlp_is_two_hidden_layers_each_with_an_activation():
    act = Activations("trainable_channel")
    model = MLP(64, 10, act)
    assert [type(m) for m in model.net] == [nn.Flatten, nn.Linear, AnnealedActivation, nn.Linear,
                                           AnnealedActivation, nn.Linear]
    assert [(m.in_features, m.out_features) for m in model.net if isinstance(m, nn.Linear)] == [
        (64, 256), (256, 256), (256, 10)]
    built = build_model("mlp", 1, 8, 10, Activations(), width=2)  # hidden = 16 × width
    assert [(m.in_features, m.out_features) for m in built.net if isinstance(m, nn.Linear)] == [
        (64, 32), (32, 32), (32, 10)]


def test_resnet18_has_the_cifar_stem():
    model = build_model("resnet18", 3, 32, 10, Activations())
    stem = model.conv1
    assert (stem.in_channels, stem.out_channels, stem.kernel_size, stem.stride, stem.padding) == (
        3, 64, (3, 3), (1, 1), (1, 1))
    assert stem.bias is None and isinstance(model.maxpool, nn.Identity)
    sizes = []
    model.conv1.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape)))
    model.eval()(_inputs((1, 3, 32, 32)))
    assert sizes == [(1, 64, 32, 32)]  # full resolution after the stem


def test_build_model_refusals_name_the_choice():
    with pytest.raises(ValueError) as caught:
        build_model("vgg", 1, 8, 10, Activations())
    assert str(caught.value) == "model 'vgg' is not allowed; choose small_cnn, mlp or resnet18"
    with pytest.raises(ValueError) as caught:
        build_model("small_cnn", 1, 8, 10, Activations(), pool="min")
    assert str(caught.value) == "pool 'min' is not allowed; choose one of max, avg, none"
