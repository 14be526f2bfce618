"""The training loop shared by every method: one random training view per iteration, the curriculum's
StepState handed to the method, the rate-distortion loss, the method's densification strategy.

    trainer = Trainer(method, scene, TrainConfig(...))
    trainer.train()                 # or train(stop_after=n) to stop early (tests of interruption)
    state = trainer.state_dict()    # everything a resumed run needs (tensors and plain values only)

The steady-state step does not wait for the GPU: the loss is checked for finiteness on the device and
read, with the other logged scalars, every ``log_every`` iterations and before each checkpoint. The
remaining synchronisations are the ones that decide tensor shapes (the visible anchors, the spawned
Gaussians) and the rasterizer's own. Resuming restores the model, the optimiser, the strategy's
statistics and every random state, so an interrupted run continues exactly as if it had not stopped.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data.scene import Scene
from ..errors import TrainingError
from ..evaluate import resolve_device
from ..model.view import View
from ..render import rasterize, resolve_backend
from .config import TrainConfig
from .curriculum import Curriculum
from .loss import RATE, RateDistortionLoss
from .optim import apply_lr, make_adam

LOG = logging.getLogger("predictgs.train")


class Trainer:
    def __init__(self, method, scene: Scene, config: TrainConfig, *, log: logging.Logger | None = None,
                 progress: bool = True, label: str = "",
                 checkpoint_hook: Callable[["Trainer"], None] | None = None, monitor=None):
        self.config = config
        self.monitor = monitor  # train.monitor.TrainMonitor: CSV / TensorBoard log, run-time estimate
        self.scene = scene
        self.progress = progress
        self.label = label
        self.log = log or LOG
        self.checkpoint_hook = checkpoint_hook
        self.total = config.iterations
        self.device = resolve_device(config.device)
        self.backend = resolve_backend(config.rasterizer, self.device)
        if self.device.type == "cpu":
            # CPU gathers otherwise accumulate their gradients in a thread-dependent order; with this
            # switch (which is also faster there) a CPU run is bit-reproducible and a resumed run
            # continues exactly as if it had not stopped.
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.model = method.to(self.device)
        self.curriculum = Curriculum(method.config.curriculum, self.total)
        self.loss = RateDistortionLoss(config.lmbda, method.config.lambda_dssim)
        self.background = torch.as_tensor(scene.background, dtype=torch.float32, device=self.device)
        self.views = [View.from_camera(c, self.device) for c in scene.train_cameras]
        self._images: dict[str, torch.Tensor] = {}
        self.iteration = 0
        self.train_seconds = 0.0
        self.order_rng = np.random.default_rng(config.seed)
        self._order: list[int] = []
        torch.manual_seed(config.seed)
        self._build_optimizer()
        # Milestones and learning-rate decays are fractions of the schedule's length (model.curriculum).
        self.strategy = method.strategy(self.curriculum.length, seed=config.seed)
        # Device-side bookkeeping read only at log and checkpoint time.
        self._first_nonfinite = torch.full((), -1, dtype=torch.long, device=self.device)
        self._psnr_ema: torch.Tensor | None = None

    # -- set-up --------------------------------------------------------------------------------------
    def _build_optimizer(self) -> None:
        groups = self.model.param_groups()
        self.schedules = {g.name: g.lr for g in groups}
        self.optimizer = make_adam(groups, fused=self.device.type in ("cpu", "cuda"))

    def target(self, camera_index: int) -> torch.Tensor:
        camera = self.scene.train_cameras[camera_index]
        key = camera.image_name
        if key not in self._images:
            image = self.scene.load_image(camera)
            self._images[key] = (image * 255).round().to(torch.uint8).to(self.device)
        return self._images[key].float() / 255.0

    def next_view(self) -> int:
        if not self._order:
            self._order = [int(i) for i in self.order_rng.permutation(len(self.views))]
        return self._order.pop()

    # -- one iteration -------------------------------------------------------------------------------
    def step(self, iteration: int) -> dict:
        model = self.model
        step = self.curriculum.state(iteration)
        model.begin_step(step)
        apply_lr(self.optimizer, self.schedules, iteration, self.curriculum.length)
        index = self.next_view()
        view, gt = self.views[index], self.target(index)
        if step.downsample < 1.0:
            width, height = max(1, round(view.width * step.downsample)), max(1, round(view.height * step.downsample))
            gt = F.interpolate(gt[None], size=(height, width), mode="bilinear", align_corners=False)[0]
            view = view.scaled(width, height)

        neural, terms = model.gaussians(view, step)
        out = rasterize(neural.means, neural.quats, neural.scales, neural.opacities, neural.colors,
                        background=self.background, sh_degree=neural.sh_degree, backend=self.backend,
                        **view.render_args())
        loss = self.loss(out.image, gt, terms)
        loss.backward()

        with torch.no_grad():
            if self.strategy.adjusting(iteration):  # it synchronises anyway: never grow from a NaN
                self._record_finite(loss, iteration)
                self.check_finite()
            events = self.strategy.step_post_backward(model, neural, out, self.optimizer, step)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self._record_finite(loss, iteration)
            mse = ((out.image.detach().clamp(0, 1) - gt) ** 2).mean()
            psnr = -10 * torch.log10(mse.clamp_min(1e-10))
            self._psnr_ema = psnr if self._psnr_ema is None else 0.9 * self._psnr_ema + 0.1 * psnr
        return {"loss": loss.detach(), "gaussians": neural.count, "events": events,
                "terms": {k: v.detach() for k, v in terms.items() if k in (RATE, "mask")}}

    def _record_finite(self, loss: torch.Tensor, iteration: int) -> None:
        bad = ~torch.isfinite(loss.detach())
        self._first_nonfinite = torch.where(bad & (self._first_nonfinite < 0),
                                            torch.full_like(self._first_nonfinite, iteration), self._first_nonfinite)

    def check_finite(self) -> None:
        """Raise if the loss was not finite at some iteration so far (one synchronisation)."""
        first = int(self._first_nonfinite)
        if first >= 0:
            raise TrainingError(
                f"the loss became NaN or infinite at iteration {first}; no checkpoint was written after it "
                f"(resume from the last checkpoint with another seed or lower learning rates)")

    # -- the run -------------------------------------------------------------------------------------
    def checkpoint_interval(self) -> int:
        return max(1, math.ceil(self.total / max(1, self.config.checkpoints)))

    def train(self, stop_after: int | None = None) -> None:
        """Train to the end (or until ``stop_after`` iterations, for tests of interruption)."""
        from tqdm import tqdm

        last = self.total if stop_after is None else min(self.total, stop_after)
        bar = tqdm(total=self.total, initial=self.iteration, disable=not self.progress, unit="it",
                   dynamic_ncols=True, desc=self.label or None)
        interval = self.checkpoint_interval()
        log_every = self.config.log_every
        self.model.train()
        if self.monitor is not None:
            self.monitor.start(self)
        try:
            while self.iteration < last:
                it = self.iteration + 1
                start = time.perf_counter()
                stats = self.step(it)
                self.train_seconds += time.perf_counter() - start
                self.iteration = it
                bar.update(1)
                if self.monitor is not None:
                    self.monitor.after_step(self, it)
                if stats["events"]:
                    self.log.info("iteration %d: densification %s", it,
                                  ", ".join(f"{k} {v}" for k, v in stats["events"].items()))
                if it % log_every == 0 or it == self.total or it == last:
                    self.check_finite()
                    self._log(it, stats, bar)
                if it % interval == 0 or it == self.total:
                    self.save_checkpoint()
        except KeyboardInterrupt:
            self.save_checkpoint()  # the next `predictgs train` with the same options resumes here
            self.log.info("interrupted at iteration %d; checkpoint saved", self.iteration)
            raise
        finally:
            bar.close()
            if self.monitor is not None:
                self.monitor.close()

    def _log(self, iteration: int, stats: dict, bar) -> None:
        loss, psnr = float(stats["loss"]), float(self._psnr_ema)
        primitives = self.model.num_primitives
        bar.set_postfix(loss=f"{loss:.4f}", psnr=f"{psnr:.2f}", primitives=primitives, refresh=False)
        terms = " ".join(f"{k} {float(v):.5g}" for k, v in stats["terms"].items())
        self.log.info("iteration %d: loss %.5f psnr(ema) %.3f gaussians %d primitives %d %s", iteration, loss, psnr,
                      stats["gaussians"], primitives, terms)
        if self.monitor is not None:
            term = stats["terms"]
            self.monitor.log(self, iteration, {
                "loss": loss, "train_psnr": psnr, "gaussians_rendered": int(stats["gaussians"]),
                "rate_term": float(term[RATE]) if RATE in term else None,
                "mask_term": float(term["mask"]) if "mask" in term else None})

    def save_checkpoint(self) -> None:
        if self.checkpoint_hook is not None:
            self.check_finite()
            self.checkpoint_hook(self)

    # -- state ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The run's state as tensors and plain Python values (loadable with weights_only=True)."""
        return {
            "iteration": self.iteration,
            "train_seconds": self.train_seconds,
            "num_primitives": self.model.num_primitives,
            "extent": self.model.extent,
            "voxel_size": self.model.voxel_size,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "strategy": self.strategy.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "order": self.order_rng.bit_generator.state,
                "pending": [int(i) for i in self._order],
            },
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.resize(state["num_primitives"])
        self.model.load_state_dict(state["model"])
        self._build_optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        self.strategy.load_state_dict(state["strategy"])
        self.iteration = state["iteration"]
        self.train_seconds = state["train_seconds"]
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if state["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.order_rng.bit_generator.state = state["rng"]["order"]
        self._order = [int(i) for i in state["rng"]["pending"]]
