"""BD-rate: the overlap of the two curves that a Bjøntegaard delta rests on, and our pchip / cubic
BD-rate and BD-PSNR cross-checked against the PyPI `bjontegaard` package (a test-only dependency,
requirements.txt; the test skips without it). The formulas themselves: tests/test_report.py."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from predictgs.errors import ReportError
from predictgs.report import bd_psnr, bd_psnr_overlap, bd_rate, bd_rate_overlap
from predictgs.report.bdrate import OVERLAP_INCONCLUSIVE, OVERLAP_WARNING, overlap


def test_overlap_is_the_shared_interval_as_a_fraction_of_each_curve():
    # anchor PSNR 30..34 (range 4), test 33..35 (range 2): they share 33..34.
    result = bd_rate_overlap([30.0, 31.0, 32.5, 34.0], [33.0, 34.0, 35.0])
    assert (result.low, result.high) == (33.0, 34.0)
    assert result.anchor_fraction == pytest.approx(0.25) and result.test_fraction == pytest.approx(0.5)
    assert result.fraction == pytest.approx(0.25) and result.warning and result.inconclusive
    assert result.axis == "quality"
    assert "25% of hac's quality range and 50% of predictgs's" in result.describe("hac", "predictgs")
    # order of the points does not matter; a curve inside the other covers all of itself
    inside = overlap([34.0, 30.0], [31.0, 33.0])
    assert inside.anchor_fraction == pytest.approx(0.5) and inside.test_fraction == 1.0
    assert inside.warning and not inside.inconclusive
    same = overlap([1.0, 2.0, 3.0], [1.0, 3.0])
    assert same.fraction == 1.0 and not same.warning
    apart = overlap([1.0, 2.0], [3.0, 4.0])
    assert apart.fraction == 0.0 and apart.inconclusive
    # the thresholds: 75% warns, 50% makes a verdict inconclusive
    assert (OVERLAP_WARNING, OVERLAP_INCONCLUSIVE) == (0.75, 0.50)
    assert not overlap([0.0, 4.0], [1.0, 5.0]).warning  # 3 of 4 = 75%: at the threshold, no warning
    assert not overlap([24.0, 24.4], [24.1, 24.45]).warning  # 0.3 / 0.4 in floats is 0.7499...: still 75%
    assert overlap([0.0, 4.0], [1.01, 5.0]).warning


def test_rate_overlap_is_on_log_rates():
    # rates 1..100 and 10..1000: in log-rate they share log(10)..log(100), half of each range
    result = bd_psnr_overlap([1.0, 10.0, 100.0], [10.0, 1000.0])
    assert result.axis == "log-rate"
    assert result.anchor_fraction == pytest.approx(0.5) and result.test_fraction == pytest.approx(0.5)
    with pytest.raises(ReportError, match="positive"):
        bd_psnr_overlap([0.0, 1.0], [1.0, 2.0])


# ---------------------------------------------------------------------------------------------------
# Cross-check against the `bjontegaard` package (FAU-LMS; its pchip and cubic modes)


def _curves(rng, n_anchor, n_test):
    """Two R-D curves with PSNR rising with rate, overlapping in PSNR and in rate."""
    def curve(n, shift):
        rates = np.sort(rng.uniform(2e5, 5e6, n))
        psnr = 22.0 + 2.2 * np.log(rates / 2e5) + shift + rng.normal(0, 0.1, n)
        return rates, np.sort(psnr)  # sorted: PSNR rises with rate, as the package assumes

    anchor = curve(n_anchor, 0.0)
    test = curve(n_test, rng.uniform(-0.4, 0.6))
    return (*anchor, *test)


@pytest.mark.parametrize("method,points", [("pchip", (5, 5)), ("pchip", (4, 5)), ("pchip", (2, 3)),
                                           ("cubic", (4, 4)), ("cubic", (5, 4))])
def test_bd_rate_and_psnr_agree_with_the_bjontegaard_package(method, points):
    bjontegaard = pytest.importorskip(
        "bjontegaard", reason="the cross-check needs the test-only package bjontegaard (requirements.txt)"
    )
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(40):
        anchor_rates, anchor_psnr, test_rates, test_psnr = _curves(rng, *points)
        try:
            ours_rate = bd_rate(anchor_rates, anchor_psnr, test_rates, test_psnr, method=method)
            ours_psnr = bd_psnr(anchor_rates, anchor_psnr, test_rates, test_psnr, method=method)
        except ReportError:
            continue  # curves that happen not to overlap: the package returns NaN there
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its overlap warning (we report ours: tests above)
            theirs_rate = bjontegaard.bd_rate(anchor_rates, anchor_psnr, test_rates, test_psnr, method,
                                              require_matching_points=False)
            theirs_psnr = bjontegaard.bd_psnr(anchor_rates, anchor_psnr, test_rates, test_psnr, method,
                                              require_matching_points=False)
        assert ours_rate == pytest.approx(theirs_rate, rel=1e-7, abs=1e-9)
        assert ours_psnr == pytest.approx(theirs_psnr, rel=1e-7, abs=1e-10)
        checked += 1
    assert checked >= 20


def test_the_package_warns_where_our_overlap_is_below_its_threshold():
    """Where one curve's PSNR range contains the other's, the package's overlap (shared / union) equals
    our smaller fraction: both warn below 75%, neither above."""
    bjontegaard = pytest.importorskip(
        "bjontegaard", reason="the cross-check needs the test-only package bjontegaard (requirements.txt)"
    )
    anchor_rates = np.array([1e6, 2e6, 4e6, 8e6])
    anchor_psnr = np.array([28.0, 30.0, 32.0, 34.0])
    for test_psnr, expected in (([29.0, 30.0, 31.0, 32.0], True), ([28.2, 30.0, 31.0, 33.9], False)):
        test_psnr = np.array(test_psnr)
        test_rates = anchor_rates * 0.9
        ours = bd_rate_overlap(anchor_psnr, test_psnr)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            bjontegaard.bd_rate(anchor_rates, anchor_psnr, test_rates, test_psnr, "pchip")
        theirs = any("overlap" in str(w.message) for w in caught)
        assert ours.warning == theirs == expected
        assert not math.isnan(bd_rate(anchor_rates, anchor_psnr, test_rates, test_psnr))
