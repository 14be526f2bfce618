"""Schedules: learning rates and milestones, expressed as fractions of the total iterations.

The reference schedules are written for 30,000 iterations (Scaffold-GS, HAC, Predict-GS). Writing every
milestone as a fraction keeps the shape of that schedule in a 1,500-iteration CPU run: noise starts at
10%, the entropy loss at a third, densification stops at half, and so on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PAPER_ITERATIONS = 30_000


def paper_fraction(iteration_at_30k: int) -> float:
    """A milestone of the 30k-iteration reference schedule as a fraction of the run."""
    return iteration_at_30k / PAPER_ITERATIONS


def at_fraction(fraction: float, total: int) -> int:
    """The iteration (1-based) at which a fraction of ``total`` is reached."""
    return int(round(fraction * total))


def interval(fraction: float, total: int) -> int:
    """A period written as a fraction of the run, at least one iteration."""
    return max(1, at_fraction(fraction, total))


@dataclass(frozen=True)
class ExponentialLR:
    """Log-linear interpolation from ``init`` to ``final`` over the run (3DGS's get_expon_lr_func with
    no delay; Scaffold-GS's delay multiplier has no effect because its delay steps are 0)."""

    init: float
    final: float | None = None  # None: constant

    def __call__(self, iteration: int, total: int) -> float:
        if self.final is None or self.init == self.final:
            return self.init
        if self.init == 0.0 or self.final == 0.0:
            return 0.0 if iteration >= total else self.init
        t = min(max(iteration / max(total, 1), 0.0), 1.0)
        return math.exp(math.log(self.init) * (1 - t) + math.log(self.final) * t)
