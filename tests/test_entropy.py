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
    tiny = torch.tensor([1e-9, 1e-9, 0.5], dtype=torch.float64, requires_grad=True)
    out = low_bound(tiny)
    assert out.tolist()[:2] == [1e-6, 1e-6]
    # Gradient blocked below the floor when it would push the value further down (positive grad),
    # passed when it pushes it up (negative grad) and everywhere above the floor.
    out.backward(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))
    assert tiny.grad.tolist() == [0.0, -1.0, 1.0]


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
