"""Bjøntegaard delta rate (BD-rate) and delta PSNR (BD-PSNR) between two rate-distortion curves.

Both measures compare the area between two interpolated curves over the interval where both are
defined, then divide by the interval's length:

- BD-rate: log-rate as a function of quality, averaged over the shared quality interval. The mean
  log-rate gap ``g`` becomes a percentage ``100 * (exp(g) - 1)``; negative means the test method needs
  fewer bits than the anchor at equal quality.
- BD-PSNR: quality as a function of log-rate, averaged over the shared log-rate interval; positive means
  the test method is better at equal rate. The log base cancels out of both results.

Interpolation (``method``):

- ``"pchip"`` (default): piecewise cubic Hermite interpolation with monotonicity-preserving slopes
  (Fritsch-Carlson, scipy's ``PchipInterpolator``), integrated exactly. This is the "piecewise cubic"
  of the later VCEG/JVET spreadsheets and the ``pchip`` mode of common ``bjontegaard`` packages.
  Needs at least 2 points with distinct abscissae per curve.
- ``"cubic"``: the original VCEG-M33 fit, one cubic polynomial per curve (least squares when there are
  more than 4 points), integrated exactly. Needs at least 4 points with distinct abscissae.

Points are sorted along the interpolation axis; repeated abscissae are an error because the curve
would not be a function there.

Overlap (``overlap``, ``bd_rate_overlap``, ``bd_psnr_overlap``). A Bjøntegaard delta is an average over
the interval that both curves cover; outside it one curve is not measured. The shared interval as a
fraction of each curve's own range says how much of the curves the number rests on: below
``OVERLAP_WARNING`` (75%, the ``min_overlap`` default below which the ``bjontegaard`` package warns) a
value comes with a warning, and below ``OVERLAP_INCONCLUSIVE`` (50%) the verdicts (``report.claims``)
do not decide a claim on it. The ``bjontegaard`` package divides the shared interval by the union of the
two ranges instead. That fraction is never larger than the smaller of ours and equals it when one range
contains the other; for two equal ranges shifted by a quarter of their length it is 60% where ours are
75%, so the package warns in some cases where we do not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator

from predictgs.errors import ReportError

INTERPOLATIONS = ("pchip", "cubic")
MIN_POINTS = {"pchip": 2, "cubic": 4}
OVERLAP_WARNING = 0.75  # shared interval / a curve's range below which a BD value gets a warning
OVERLAP_INCONCLUSIVE = 0.50  # ... below which a verdict does not rest on it
_TOLERANCE = 1e-9  # fractions are ratios of float differences: 0.3 / 0.4 must count as 75%


@dataclass(frozen=True)
class Overlap:
    """The interval two curves share along one axis (quality for BD-rate, log-rate for BD-PSNR), as a
    fraction of each curve's own range. A curve of one distinct value has range 0: fraction 1 when the
    other curve covers that value, else 0."""

    axis: str  # "quality" or "log-rate"
    low: float
    high: float
    anchor_fraction: float
    test_fraction: float

    @property
    def fraction(self) -> float:
        """The smaller of the two fractions: how much of the less covered curve the value rests on."""
        return min(self.anchor_fraction, self.test_fraction)

    @property
    def warning(self) -> bool:
        return self.fraction < OVERLAP_WARNING - _TOLERANCE

    @property
    def inconclusive(self) -> bool:
        return self.fraction < OVERLAP_INCONCLUSIVE - _TOLERANCE

    def describe(self, anchor_name: str = "anchor", test_name: str = "test") -> str:
        """E.g. "the curves share 62% of hac's quality range and 100% of predictgs's" (percentages rounded
        down, so that a fraction below a threshold never prints as the threshold)."""
        def percent(fraction):
            return math.floor(100 * fraction + 100 * _TOLERANCE)

        return (f"the curves share {percent(self.anchor_fraction)}% of {anchor_name}'s {self.axis} range and "
                f"{percent(self.test_fraction)}% of {test_name}'s")


def overlap(anchor_x: Sequence[float], test_x: Sequence[float], axis: str = "quality") -> Overlap:
    """The shared interval of two curves along one axis (values as given: pass log-rates for the rate
    axis), as a fraction of each curve's range."""
    anchor_x = _values(anchor_x, "anchor", axis)
    test_x = _values(test_x, "test", axis)
    if anchor_x.size == 0 or test_x.size == 0:
        raise ReportError("overlap: a curve has no points")
    low = max(anchor_x.min(), test_x.min())
    high = min(anchor_x.max(), test_x.max())
    shared = max(high - low, 0.0)

    def fraction(x):
        span = x.max() - x.min()
        if span > 0:
            return float(shared / span)
        return 1.0 if low <= high else 0.0

    return Overlap(axis=axis, low=float(low), high=float(high), anchor_fraction=fraction(anchor_x),
                   test_fraction=fraction(test_x))


def bd_rate_overlap(anchor_quality: Sequence[float], test_quality: Sequence[float]) -> Overlap:
    """The overlap BD-rate integrates over: the curves' quality (PSNR) ranges."""
    return overlap(anchor_quality, test_quality, "quality")


def bd_psnr_overlap(anchor_rates: Sequence[float], test_rates: Sequence[float]) -> Overlap:
    """The overlap BD-PSNR integrates over: the curves' log-rate ranges."""
    return overlap(_log_rates(anchor_rates, "anchor"), _log_rates(test_rates, "test"), "log-rate")


def bd_rate(
    anchor_rates: Sequence[float],
    anchor_quality: Sequence[float],
    test_rates: Sequence[float],
    test_quality: Sequence[float],
    *,
    method: str = "pchip",
    anchor_name: str = "anchor",
    test_name: str = "test",
) -> float:
    """BD-rate of the test curve against the anchor curve, in percent.

    Rates are any positive size measure (bytes, bits, MiB: the unit cancels); quality is PSNR or any
    higher-is-better metric. ``anchor_name``/``test_name`` (e.g. "hac on mipnerf360") appear in errors.
    """
    anchor_log_rates = _log_rates(anchor_rates, anchor_name)
    test_log_rates = _log_rates(test_rates, test_name)
    mean_gap = _mean_vertical_gap(
        anchor_x=_values(anchor_quality, anchor_name, "quality"),
        anchor_y=anchor_log_rates,
        test_x=_values(test_quality, test_name, "quality"),
        test_y=test_log_rates,
        method=method,
        axis="quality",
        anchor_name=anchor_name,
        test_name=test_name,
    )
    return float(np.expm1(mean_gap) * 100.0)


def bd_psnr(
    anchor_rates: Sequence[float],
    anchor_psnr: Sequence[float],
    test_rates: Sequence[float],
    test_psnr: Sequence[float],
    *,
    method: str = "pchip",
    anchor_name: str = "anchor",
    test_name: str = "test",
) -> float:
    """BD-PSNR (more generally: BD-quality) of the test curve against the anchor curve, in dB."""
    return float(
        _mean_vertical_gap(
            anchor_x=_log_rates(anchor_rates, anchor_name),
            anchor_y=_values(anchor_psnr, anchor_name, "quality"),
            test_x=_log_rates(test_rates, test_name),
            test_y=_values(test_psnr, test_name, "quality"),
            method=method,
            axis="rate",
            anchor_name=anchor_name,
            test_name=test_name,
        )
    )


def _values(values: Sequence[float], curve_name: str, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    if not np.all(np.isfinite(array)):
        raise ReportError(f"{curve_name}: {what} values must be finite numbers, got {array.tolist()}")
    return array


def _log_rates(rates: Sequence[float], curve_name: str) -> np.ndarray:
    array = _values(rates, curve_name, "rate")
    if np.any(array <= 0):
        raise ReportError(f"{curve_name}: rates must be positive, got {array.tolist()}")
    return np.log(array)


def _mean_vertical_gap(
    *,
    anchor_x: np.ndarray,
    anchor_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    method: str,
    axis: str,
    anchor_name: str,
    test_name: str,
) -> float:
    """Mean of (test(x) - anchor(x)) over the x interval covered by both curves."""
    if method not in INTERPOLATIONS:
        raise ReportError(f"unknown BD interpolation {method!r}; choose one of {', '.join(INTERPOLATIONS)}")
    anchor_x, anchor_y = _sorted_curve(anchor_x, anchor_y, method, axis, anchor_name)
    test_x, test_y = _sorted_curve(test_x, test_y, method, axis, test_name)
    low = max(anchor_x[0], test_x[0])
    high = min(anchor_x[-1], test_x[-1])
    if not high > low:
        span = "log-rate" if axis == "rate" else "quality"
        raise ReportError(
            f"{test_name} and {anchor_name} do not overlap in {span}: "
            f"[{test_x[0]:.6g}, {test_x[-1]:.6g}] vs [{anchor_x[0]:.6g}, {anchor_x[-1]:.6g}]"
        )
    area_test = _integral(test_x, test_y, method, low, high)
    area_anchor = _integral(anchor_x, anchor_y, method, low, high)
    return (area_test - area_anchor) / (high - low)


def _sorted_curve(
    x: np.ndarray, y: np.ndarray, method: str, axis: str, curve_name: str
) -> tuple[np.ndarray, np.ndarray]:
    if x.shape != y.shape:
        raise ReportError(f"{curve_name}: {x.size} rates but {y.size} quality values")
    needed = MIN_POINTS[method]
    distinct = np.unique(x).size
    if distinct < needed:
        raise ReportError(
            f"{curve_name}: BD-{method} needs at least {needed} rate points with distinct {axis} values, "
            f"got {distinct}"
        )
    if distinct != x.size:
        raise ReportError(
            f"{curve_name}: repeated {axis} values {np.sort(x).tolist()}; the curve is ambiguous"
        )
    order = np.argsort(x)
    return x[order], y[order]


def _integral(x: np.ndarray, y: np.ndarray, method: str, low: float, high: float) -> float:
    if method == "pchip":
        return float(PchipInterpolator(x, y).integrate(low, high))
    antiderivative = np.polyint(np.polyfit(x, y, 3))
    return float(np.polyval(antiderivative, high) - np.polyval(antiderivative, low))
