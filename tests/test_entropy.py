"""Entropy-model building blocks: discretised Gaussian, probability floor, Bernoulli cost, quantisers."""

import math

import pytest
import torch

from predictgs.entropy import (adaptive_step, binary_bits, gaussian_bits, gaussian_likelihood, low_bound,
                               quantize)


def test_discretised_gaussian_is_a_distribution_over_bins():
    step = torch.tensor(0.5, dtype=torch.float64)
    bins = torch.arange(-60, 61, dtype=torch.float64) * step
    mean, scale = torch.tensor(0.3, dtype=torch.float64), torch.tensor(1.7, dtype=torch.float64)
    p = gaussian_likelihood(bins, mean.expand_as(bins), scale.expand_as(bins), step.expand_as(bins))
    assert math.isclose(float(p.sum()), 1.0, abs_tol=1e-4)  # floor adds at most 1e-6 per bin
    # The bin that holds the mean is the most likely one.
    assert int(p.argmax()) == int(torch.argmin((bins - 0.3).abs()))


def test_bits_match_closed_form():
    x = torch.tensor([0.0, 1.0])
    mean, scale, step = torch.zeros(2), torch.ones(2), torch.ones(2)
    bits = gaussian_bits(x, mean, scale, step)
    phi = lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2)))  # noqa: E731
    assert math.isclose(float(bits[0]), -math.log2(phi(0.5) - phi(-0.5)), rel_tol=1e-5)
    assert math.isclose(float(bits[1]), -math.log2(phi(1.5) - phi(0.5)), rel_tol=1e-5)


def test_probability_floor_and_its_gradient():
    """HAC's and HAC++'s Low_bound: likelihoods floored at 1e-6, and no gradient below the floor, whatever
    its sign (the reference zeroes it there, then also keeps it only where x >= 1e-6 or g < 0)."""
    tiny = torch.tensor([1e-9, 1e-9, 0.5], dtype=torch.float64, requires_grad=True)
    out = low_bound(tiny)
    assert out.tolist()[:2] == [1e-6, 1e-6]
    out.backward(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))
    assert tiny.grad.tolist() == [0.0, 0.0, 1.0]


def test_rate_gradient_is_zero_below_the_floor():
    """The values of the issue: at likelihoods 5e-7 and 1e-8 the reference's rate gradient is 0 (a rule
    that passed negative gradients gave -1/(1e-6 ln 2) = -1.44e6 there); above the floor it is -1/(p ln 2)."""
    p = torch.tensor([5e-7, 1e-8, 0.25], dtype=torch.float64, requires_grad=True)
    bits = -torch.log2(low_bound(p))
    assert bits.tolist()[:2] == pytest.approx([-math.log2(1e-6)] * 2)
    bits.sum().backward()
    assert p.grad.tolist() == pytest.approx([0.0, 0.0, -1 / (0.25 * math.log(2))])


@pytest.mark.parametrize("method", ["hac", "hacpp", "predictgs", "predictgs_hacpp"])
def test_entropy_models_pass_no_gradient_below_the_floor(method):
    """Each method's entropy model (HAC's single Gaussians; HAC++'s channel-context mixture) gives no rate
    gradient to a value, or to its predicted mean, whose likelihood is below 1e-6; a value above the floor
    gets one."""
    from predictgs.entropy.anchor import Distributions
    from predictgs.methods import method_class, method_config

    config = method_config(method, {"context": {"log2_grid": 4, "log2_plane": 4}})
    points = torch.rand(64, 3, generator=torch.Generator().manual_seed(0)).numpy()
    model = method_class(method).from_points(config, points, 1.0)
    context = model.context.eval()  # test-time rounding: x = round(x / Q) Q, no noise
    channel = getattr(context, "channel", None)
    if channel is not None:  # the channel component N(0, 1) too, with equal weights: p is known
        with torch.no_grad():
            for mlp, size in zip(channel.mlps, channel.sizes):
                mlp[-1].weight.zero_()
                mlp[-1].bias.copy_(torch.cat([torch.zeros(size), torch.ones(size), torch.zeros(size)]))
    n = 2
    mean = {g: torch.zeros(n, d, dtype=torch.float64, requires_grad=True) for g, d in context.groups.items()}
    dist = Distributions(mean, {g: torch.ones(n, d, dtype=torch.float64) for g, d in context.groups.items()},
                         {g: torch.ones(n, 1, dtype=torch.float64) for g in context.groups},
                         logits=torch.zeros(n, context.groups[next(iter(context.groups))], dtype=torch.float64))
    context.double()
    group, dim = next(iter(context.groups.items()))
    values = {g: torch.zeros(n, d, dtype=torch.float64) for g, d in context.groups.items()}
    # The last column of the attribute vector (no channel chunk reads it): 6 sigma out, p(6) = 1.9e-8 per
    # component, below the floor; row 1 holds 1 sigma, p(1) = 0.24.
    values[group][0, dim - 1] = 6.0
    values[group][1, dim - 1] = 1.0
    values = {g: v.requires_grad_() for g, v in values.items()}
    centres = {g: torch.zeros((), dtype=torch.float64) for g in context.groups}
    _, likelihoods = context(values, dist, centres)
    assert float(likelihoods[group][0, dim - 1].detach()) == 1e-6
    assert float(likelihoods[group][1, dim - 1].detach()) > 0.2
    sum(-torch.log2(lik).sum() for lik in likelihoods.values()).backward()
    assert float(values[group].grad[0, dim - 1]) == 0.0
    assert float(mean[group].grad[0, dim - 1]) == 0.0
    # -d log2 p / dx = 1.33 for one Gaussian (pulls the value back to the mean); half on the mixture's mean
    assert float(values[group].grad[1, dim - 1]) > 0.5
    assert float(mean[group].grad[1, dim - 1]) < -0.5


def test_binary_cost_is_bernoulli_entropy_plus_32():
    half = torch.tensor([0, 1] * 50)
    assert math.isclose(float(binary_bits(half)), 100 + 32, rel_tol=1e-6)
    skewed = torch.tensor([1] * 10 + [0] * 90)
    h = -(0.1 * math.log2(0.1) + 0.9 * math.log2(0.9))
    assert math.isclose(float(binary_bits(skewed)), 100 * h + 32, rel_tol=1e-5)


def test_quantisers():
    x = torch.tensor([0.26, -0.74, 1.1], requires_grad=True)
    step = torch.tensor(0.5)
    q = quantize(x, step, "round")
    assert q.tolist() == [0.5, -0.5, 1.0]
    q.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]
    torch.manual_seed(0)
    noisy = quantize(x.detach(), step, "noise")
    assert ((noisy - x.detach()).abs() <= 0.25).all() and not torch.equal(noisy, x.detach())
    with pytest.raises(ValueError, match="quantisation mode"):
        quantize(x, step, "none")
    adj = torch.tensor([-50.0, 0.0, 50.0])
    s = adaptive_step(0.2, adj)
    assert 0 <= float(s[0]) < 1e-6 and math.isclose(float(s[1]), 0.2, rel_tol=1e-6)
    assert math.isclose(float(s[2]), 0.4, rel_tol=1e-6)


def test_hac_rate_on_the_sampled_rows_equals_the_weighted_rate():
    """The CPU measures HAC's rate on the sampled anchors' likelihoods only (indexed, as the reference code
    does); CUDA weighs every visible anchor's by 0/1. Same rate, same gradients."""
    import numpy as np

    from baselines.hac import RateSample, StepTables
    from predictgs.methods import method_class, method_config

    config = method_config("hac", {"context": {"log2_grid": 6, "log2_plane": 6, "hidden_dim": 16}})
    points = np.random.default_rng(0).uniform(-1, 1, (300, 3)).astype(np.float32)
    model = method_class("hac").from_points(config, points, extent=2.0, seed=0).train()
    positions = model.anchor_positions()
    masks = model.anchors.mask_hard(config.mask_threshold).detach()
    masks = masks * (torch.arange(300) % 7 != 0).float()[:, None, None]  # some anchors keep no Gaussian
    chosen = (torch.rand(300, generator=torch.Generator().manual_seed(1)) < 0.2) & (masks.sum(dim=(1, 2)) > 0)
    anchor_rate = (masks.sum(dim=(1, 2)) > 0).float().mean()
    results = []
    for sample in (RateSample(anchor_rate, rows=torch.nonzero(chosen).squeeze(1), weights=None),
                   RateSample(anchor_rate, rows=None, weights=chosen.float()[:, None])):
        model.zero_grad()
        values = model.coded_values(torch.arange(300))
        tables = StepTables(model.binary_tables())
        dist = model.context.distributions(model.bounds.normalise(positions), tables["hash"])
        centres = model.parameter_centres()
        likelihoods = model.context.likelihoods(values, dist, centres, rows=sample.rows)
        rate = model.rate_terms(likelihoods, masks, tables, sample)["rate"]
        rate.backward()
        results.append((rate.detach(), [p.grad.clone() for p in model.context.mlp_grid.parameters()]))
    (rows_rate, rows_grads), (weighted_rate, weighted_grads) = results
    torch.testing.assert_close(rows_rate, weighted_rate, rtol=1e-5, atol=0)
    for a, b in zip(rows_grads, weighted_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
