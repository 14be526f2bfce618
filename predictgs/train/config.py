"""The trainer's own settings (the ``train:`` section of a run's config.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import CHECK, SEED_LIMIT, bounded, check_device, choice, positive

RASTERIZERS = ("auto", "compiled", "gsplat", "reference")


@dataclass
class TrainConfig:
    iterations: int = field(default=30_000, metadata=bounded(1, 10**9))
    seed: int = field(default=0, metadata=bounded(0, SEED_LIMIT, high_open=True))
    device: str = field(default="auto", metadata={CHECK: check_device})  # auto: CUDA when available
    checkpoints: int = field(default=10, metadata=bounded(1, 10**6))  # written over the run (+ the last)
    lpips: bool = True
    log_every: int = field(default=50, metadata=bounded(1, 10**9))
    # Rate-distortion weight of the loss (None: the method's default; methods without a rate ignore it).
    lmbda: float | None = field(default=None, metadata=positive(optional=True))
    # auto: gsplat on CUDA (an error if it cannot be loaded), the compiled CPU rasterizer elsewhere (the
    # reference when it cannot be built, after one warning).
    rasterizer: str = field(default="auto", metadata=choice(RASTERIZERS))
