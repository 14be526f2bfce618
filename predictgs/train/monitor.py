"""What a training reports while it runs, besides train.log and the progress bar:

- ``train_log.csv`` in the run folder: one row every ``log_every`` iterations (and the last): loss, the
  training PSNR (moving average), the rate and mask terms of the loss, the estimated bits per category
  of the whole model (every ``rate_every`` iterations: at most about 100 times per run, it evaluates the
  entropy model over every anchor), anchors / primitives, Gaussians rendered in the step, iterations per
  second since the previous row, training seconds. A resumed run drops the rows after its checkpoint.
- TensorBoard (``--tensorboard``, optional: ``pip install predictgs[tensorboard]``): the same scalars, and
  the first test view rendered by the test-time model every ``image_every`` iterations, in
  ``<run>/tensorboard/``.
- One message (through ``notify``) when a CPU training's first iterations predict a run of more than
  ``eta_limit_s`` seconds, with how to shorten it.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Callable

import torch

from ..errors import ConfigError
from ..io import write_atomic

CSV_NAME = "train_log.csv"
TENSORBOARD_DIR = "tensorboard"
ETA_LIMIT_S = 600.0
BASE_COLUMNS = ("iteration", "loss", "train_psnr", "rate_term", "mask_term", "anchors", "primitives",
                "gaussians_rendered", "its_per_second", "train_seconds")


def tensorboard_writer(directory: Path):
    """A TensorBoard SummaryWriter, or a one-line ConfigError naming the extra to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs the tensorboard package: pip install 'predictgs[tensorboard]'") \
            from None
    return SummaryWriter(log_dir=str(directory))


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class TrainMonitor:
    def __init__(self, run_dir: Path | None, *, notify: Callable[[str], None] | None = None,
                 tensorboard: bool = False, image_every: int | None = None, eta_limit_s: float = ETA_LIMIT_S):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.notify = notify or (lambda line: None)
        self.writer = tensorboard_writer(self.run_dir / TENSORBOARD_DIR) if tensorboard and self.run_dir else None
        self.image_every = image_every
        self.eta_limit_s = eta_limit_s
        self.warned = False
        self.categories: list[str] = []
        self._last: tuple[int, float] | None = None
        self._start: tuple[int, float, float] | None = None
        self._warm: tuple[int, float] | None = None

    @property
    def csv_path(self) -> Path | None:
        return self.run_dir / CSV_NAME if self.run_dir is not None else None

    def columns(self) -> list[str]:
        return [*BASE_COLUMNS, *(f"bits_{name}" for name in self.categories)]

    # -- life cycle ------------------------------------------------------------------------------------
    def start(self, trainer) -> None:
        """Before the first step of this process: the rows after the checkpoint's iteration go (they were
        written by a process that was stopped before its next checkpoint)."""
        self.categories = list(trainer.model.estimated_bits()) if hasattr(trainer.model, "estimated_bits") else []
        self._start = (trainer.iteration, time.perf_counter(), trainer.train_seconds)
        self._warm = None
        self._last = (trainer.iteration, time.perf_counter())
        path = self.csv_path
        if path is None:
            return
        kept = []
        if path.is_file() and trainer.iteration > 0:
            with open(path, newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                if reader.fieldnames == self.columns():
                    kept = [row for row in reader if row["iteration"].isdigit()
                            and int(row["iteration"]) <= trainer.iteration]
        buffer = io.StringIO()
        out = csv.DictWriter(buffer, fieldnames=self.columns(), lineterminator="\n")
        out.writeheader()
        out.writerows(kept)
        write_atomic(path, buffer.getvalue())

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    # -- every iteration -------------------------------------------------------------------------------
    def after_step(self, trainer, iteration: int) -> None:
        """The run-time estimate (CPU only, said once): from the iterations of this process after its first
        (which pays for warm-up: allocations, caches)."""
        if self.warned or trainer.device.type != "cpu" or self._start is None:
            return
        if self._warm is None:
            self._warm = (iteration, time.perf_counter())
            return
        first, started, seconds_before = self._start
        warm_iteration, warm_time = self._warm
        now = time.perf_counter()
        done, elapsed = iteration - warm_iteration, now - warm_time
        if done < 3 or elapsed < 5.0:
            return
        per_iteration = elapsed / done
        predicted = seconds_before + (now - started) + per_iteration * (trainer.total - iteration)
        if predicted > self.eta_limit_s:
            self.warned = True
            self.notify(f"this CPU training will take about {predicted / 60:.0f} min at its current "
                        f"{per_iteration:.2f} s/iteration ({trainer.total} iterations; anchor growth can slow it "
                        "further); to shorten it: fewer --iterations, smaller images (--max-width, --downscale), "
                        "--preset embedded for small scenes, or a GPU (--device cuda)")

    # -- log points ------------------------------------------------------------------------------------
    def rate_every(self, trainer) -> int:
        log_every = trainer.config.log_every
        return log_every * max(1, math.ceil(trainer.total / 100 / log_every))

    def log(self, trainer, iteration: int, values: dict) -> dict:
        """One row at a log point; ``values``: loss, train_psnr, rate_term, mask_term, gaussians_rendered."""
        now = time.perf_counter()
        last_iteration, last_time = self._last or (iteration, now)
        self._last = (iteration, now)
        its = (iteration - last_iteration) / (now - last_time) if now > last_time and iteration > last_iteration \
            else None
        counts = trainer.model.counts()
        row = {"iteration": iteration, **values, "anchors": counts.get("num_anchors"),
               "primitives": trainer.model.num_primitives, "its_per_second": its,
               "train_seconds": trainer.train_seconds}
        if self.categories and (iteration % self.rate_every(trainer) == 0 or iteration == trainer.total):
            with torch.no_grad():
                bits = trainer.model.estimated_bits()
            row.update({f"bits_{name}": float(bits[name]) for name in self.categories if name in bits})
        if self.csv_path is not None:
            with open(self.csv_path, "a", newline="", encoding="utf-8") as handle:
                csv.DictWriter(handle, fieldnames=self.columns(), lineterminator="\n").writerow(
                    {key: _format(row.get(key)) for key in self.columns()})
        if self.writer is not None:
            for key, value in row.items():
                if key != "iteration" and isinstance(value, (int, float)) and value is not None:
                    self.writer.add_scalar(f"train/{key}", value, iteration)
            if self.image_every and (iteration % self.image_every == 0 or iteration == trainer.total):
                self.add_test_view(trainer, iteration)
        return row

    def add_test_view(self, trainer, iteration: int) -> None:
        """The first test view (a training view when there are none) rendered by the test-time model."""
        from ..evaluate import render_view

        cameras = trainer.scene.test_cameras or trainer.scene.train_cameras
        rng = torch.get_rng_state()  # rendering draws nothing, but a training must not depend on logging
        try:
            image = render_view(trainer.model.eval(), cameras[0], trainer.background, trainer.device,
                                trainer.backend).image.clamp(0, 1)
        finally:
            trainer.model.train()
            torch.set_rng_state(rng)
        self.writer.add_image("test_view/render", image.detach().cpu(), iteration, dataformats="HWC"
                              if image.shape[-1] == 3 else "CHW")


__all__ = ["TrainMonitor", "CSV_NAME", "TENSORBOARD_DIR", "tensorboard_writer"]
