"""The mixture coder's normal CDF (predictgs/codec/normal.py): its constants, its accuracy, and that it is the
same function bit for bit wherever it is evaluated (any batch, the compiled twin)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from predictgs import kernels
from predictgs.codec import normal


def test_constants_are_the_correctly_rounded_values():
    """Q(c) and phi(c) at every piece centre, recomputed at 50 digits: the literals are those values rounded."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    assert len(normal.CENTRES) == normal.LIMIT * normal.PIECES_PER_UNIT
    for j, (q, phi) in enumerate(normal.CENTRES):
        c = (mpmath.mpf(j) + mpmath.mpf(1) / 2) / normal.PIECES_PER_UNIT
        assert q == float(mpmath.ncdf(-c)), j
        assert phi == float(mpmath.npdf(c)), j


def test_accuracy_against_mpmath():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 30
    z = np.concatenate([np.linspace(-9, 9, 1441), np.random.default_rng(0).normal(0, 3, 500)])
    exact = np.array([float(mpmath.ncdf(v)) for v in z])
    assert np.abs(normal.cdf(z) - exact).max() <= 2.3e-16


def test_special_values():
    z = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, normal.LIMIT, -normal.LIMIT, 40.0, -40.0])
    assert normal.cdf(z).tolist() == [0.5, 0.5, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    assert abs(normal.cdf(np.array([-1e-300]))[0] - 0.5) <= 1.2e-16
    # symmetric and nearly monotone (the pieces meet within an ulp)
    grid = np.linspace(-normal.LIMIT, normal.LIMIT, 200_001)
    values = normal.cdf(grid)
    positive = grid[grid >= 0]
    assert np.abs(normal.cdf(-positive) + normal.cdf(positive) - 1.0).max() <= 2.3e-16
    assert np.diff(values).min() >= -2.3e-16


def test_the_same_whatever_the_batch():
    """An element's value does not depend on its batch (numpy's elementwise IEEE operations, no FMA)."""
    z = np.random.default_rng(1).normal(0, 4, 2001)
    batch = normal.cdf(z)
    assert np.array_equal(batch, np.array([normal.cdf(np.array([v]))[0] for v in z]))
    assert np.array_equal(batch[3:17], normal.cdf(z[3:17]))


@pytest.mark.skipif(not kernels.available(), reason="the compiled CPU kernels cannot be built here")
def test_the_compiled_twin_is_the_same_bit_for_bit():
    rng = np.random.default_rng(2)
    edges = np.arange(0, normal.LIMIT * normal.PIECES_PER_UNIT + 1) / normal.PIECES_PER_UNIT
    z = np.concatenate([rng.normal(0, 3, 50_000), rng.uniform(-9, 9, 50_000), edges, -edges,
                        np.nextafter(edges, 0), np.nextafter(edges, 10), [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-310]])
    table = torch.from_numpy(normal.coefficients().copy())
    compiled = kernels.load().normal_cdf(torch.from_numpy(z), table, normal.LIMIT, normal.PIECES_PER_UNIT).numpy()
    reference = normal.cdf(z)
    assert np.array_equal(compiled.view(np.int64), reference.view(np.int64))
