"""The training curriculum: which phase each iteration is in, decided by the trainer and handed to the
method as a :class:`StepState`, so that a method reads like its equations and never counts iterations.

Milestones are written as fractions of the reference schedules' 30,000 iterations (``paper_fraction(i)`` =
i / 30,000). ``milestones`` says what they are fractions of (:func:`schedule_length`):

- ``fraction`` (the default, what the embedded benchmark uses): of the run, ``--iterations``, so a short CPU
  run keeps the shape of the 30k-iteration schedule; learning rates decay over the run;
- ``reference``: of 30,000 iterations whatever the run's length, i.e. the reference code's milestones in
  iterations (noise from 3,000, rate from 10,000, anchor growth until 15,000, ...) and its learning-rate
  decays over 30,000 steps (a longer run stays at the final rates), so a run of any length can be compared
  with an official run of that length.

The trainer uses the same length for the learning rates and the densification strategy. The phases a
method uses are in its config's ``curriculum:`` section:

- quantisation (HAC, Predict-GS): none up to ``noise_from``; uniform noise with the base steps Q0 up to
  ``entropy_from``; then the entropy model's adaptive steps with the rate loss ("entropy");
- ``bbox_update_at``: HAC's anchor-box update;
- ``residual_from``: Predict-GS's stage 2 (the residual branch);
- ``schedule``/``ds_init``/``ds_final``/``ds_until``: the resolution of the training targets
  (Predict-GS's progressive training, eq. 6 and the ablation variants of Table 6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..config import bounded, choice
from .schedule import PAPER_ITERATIONS, at_fraction

SCHEDULES = ("cosine", "linear", "none", "off")
QUANTISATION_PHASES = ("none", "noise", "entropy")
MILESTONES = ("fraction", "reference")


def schedule_length(milestones: str, total: int) -> int:
    """The number of iterations the milestones and learning-rate decays are fractions of: the run's
    (``fraction``) or the reference code's 30,000 (``reference``)."""
    if milestones == "fraction":
        return int(total)
    if milestones == "reference":
        return PAPER_ITERATIONS
    raise ValueError(f"unknown milestones {milestones!r}; choose one of {', '.join(MILESTONES)}")


def _fraction(default):
    return field(default=default, metadata=bounded(0.0, 1.0, optional=True))


@dataclass
class CurriculumConfig:
    """Milestones (fractions of the schedule's length, None = never; ``milestones``: of the run or of the
    reference's 30,000 iterations) and the downsampling schedule."""

    milestones: str = field(default="fraction", metadata=choice(MILESTONES))
    noise_from: float | None = _fraction(None)
    entropy_from: float | None = _fraction(None)
    bbox_update_at: float | None = _fraction(None)
    residual_from: float | None = _fraction(None)
    schedule: str = field(default="off", metadata=choice(SCHEDULES))
    ds_init: float = field(default=1.0, metadata=bounded(0.0, 1.0, low_open=True))
    ds_final: float = field(default=1.0, metadata=bounded(0.0, 1.0, low_open=True))
    ds_until: float = _fraction(0.0)


@dataclass(frozen=True)
class StepState:
    """What the trainer tells the method about the current iteration (1-based). ``total``: the length of
    the schedule (the run's iterations, or 30,000 with ``milestones: reference``)."""

    iteration: int
    total: int
    quantisation: str = "none"  # "none" | "noise" | "entropy"
    residual: bool = False  # Predict-GS stage 2
    downsample: float = 1.0  # resolution factor of the training targets
    update_bounds: bool = False  # recompute HAC's anchor box before this step

    @property
    def fraction(self) -> float:
        return self.iteration / max(self.total, 1)


def downsampling_scale(schedule: str, t: int, until: int, ds_init: float, ds_final: float = 1.0,
                       stage1_end: int = 0) -> float:
    """Resolution factor delta_t of the training targets at iteration t (0-based).

    cosine (eq. 6): delta_e + (delta_s - delta_e)(1 + cos(pi t / T)) / 2 for t < T, then delta_e;
    linear: delta_s + (delta_e - delta_s) t / T for t < T, then delta_e;
    none: delta_s through stage 1, full resolution in stage 2 (the ablation of Table 6);
    off: full resolution throughout (no progressive training, Table 4)."""
    if schedule == "off":
        return 1.0
    if schedule == "none":
        return ds_init if t < stage1_end else ds_final
    if t >= until:
        return ds_final
    if schedule == "cosine":
        return ds_final + 0.5 * (ds_init - ds_final) * (1.0 + math.cos(math.pi * t / until))
    if schedule == "linear":
        return ds_init + (ds_final - ds_init) * t / until
    raise ValueError(f"unknown downsampling schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


class Curriculum:
    """The :class:`StepState` of every iteration of a run of ``total`` iterations; ``length`` is the
    schedule's (:func:`schedule_length`)."""

    def __init__(self, config: CurriculumConfig, total: int):
        self.config = config
        self.total = int(total)
        self.length = schedule_length(config.milestones, self.total)

        def at(fraction):
            return None if fraction is None else at_fraction(fraction, self.length)

        self.noise_from = at(config.noise_from)
        self.entropy_from = at(config.entropy_from)
        self.bbox_update_at = at(config.bbox_update_at)
        self.residual_from = at(config.residual_from)
        self.ds_until = at_fraction(config.ds_until, self.length)

    def quantisation(self, iteration: int) -> str:
        if self.entropy_from is not None and iteration > self.entropy_from:
            return "entropy"
        if self.noise_from is not None and iteration > self.noise_from:
            return "noise"
        return "none"

    def state(self, iteration: int) -> StepState:
        c = self.config
        residual = self.residual_from is not None and iteration > self.residual_from
        scale = downsampling_scale(c.schedule, iteration - 1, self.ds_until, c.ds_init, c.ds_final,
                                   stage1_end=self.residual_from or 0)
        return StepState(iteration=iteration, total=self.length, quantisation=self.quantisation(iteration),
                         residual=residual, downsample=scale, update_bounds=iteration == self.bbox_update_at)
