"""The training loop shared by every anchor method: one random training view per iteration, the
Scaffold-GS loss plus the method's terms, anchor growing, checkpoints, resume, test evaluation.

A run directory holds: config.yaml (everything needed to rerun), train.log, checkpoint.pt (latest,
written atomically), metrics.json and per_view.json (test views, quantised test-mode model).
Resuming restores the model, the optimiser, the growth statistics and every random state, so an
interrupted run continues exactly as if it had not stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import dump_yaml, load_yaml, to_dict
from ..data.scene import Scene
from ..errors import ConfigError, TrainingError
from ..metrics import evaluate_images, ssim_torch
from ..model.view import View
from ..render import rasterize
from .densify import AnchorGrowth
from .optim import apply_lr, make_adam

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.yaml"


@dataclass
class TrainConfig:
    iterations: int = 30_000
    seed: int = 0
    device: str = "auto"  # auto: CUDA when available
    checkpoints: int = 10  # checkpoints written over the run (plus the last iteration)
    lpips: bool = True
    log_every: int = 50


@dataclass
class RunSpec:
    """Everything that defines a run; saved as config.yaml."""

    method: str
    scene: str
    benchmark: str = "custom"
    protocol: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    model: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return to_dict(self)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def device_label(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


class Trainer:
    def __init__(self, spec: RunSpec, method, scene: Scene, run_dir: Path, progress: bool = True):
        self.spec = spec
        self.scene = scene
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.total = spec.train.iterations
        self.device = resolve_device(spec.train.device)
        if self.device.type == "cpu":
            # CPU gathers otherwise accumulate their gradients in a thread-dependent order; with this
            # switch (which is also faster there) a CPU run is bit-reproducible and a resumed run
            # continues exactly as if it had not stopped.
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.model = method.to(self.device)
        self.background = torch.as_tensor(scene.background, dtype=torch.float32, device=self.device)
        self.views = [View.from_camera(c, self.device) for c in scene.train_cameras]
        self._images: dict[str, torch.Tensor] = {}
        self.iteration = 0
        self.train_seconds = 0.0
        self.order_rng = np.random.default_rng(spec.train.seed)
        self._order: list[int] = []
        torch.manual_seed(spec.train.seed)
        self._build_optimizer()
        self.growth = AnchorGrowth(self.model.densify_config(), self.model.voxel_size, self.total,
                                   seed=spec.train.seed)
        self.log = _file_logger(self.run_dir / "train.log")

    # -- set-up --------------------------------------------------------------------------------------
    def _build_optimizer(self) -> None:
        groups = self.model.param_groups()
        self.schedules = {g.name: g.lr for g in groups}
        self.optimizer = make_adam(groups)

    def target(self, camera_index: int, cameras=None) -> torch.Tensor:
        camera = (cameras or self.scene.train_cameras)[camera_index]
        key = camera.image_name
        if key not in self._images:
            image = self.scene.load_image(camera)
            self._images[key] = (image * 255).round().to(torch.uint8).to(self.device)
        return self._images[key].float() / 255.0

    def next_view(self) -> int:
        if not self._order:
            self._order = list(self.order_rng.permutation(len(self.views)))
        return int(self._order.pop())

    # -- one iteration -------------------------------------------------------------------------------
    def step(self, iteration: int) -> dict:
        model, total = self.model, self.total
        model.on_iteration_start(iteration, total)
        apply_lr(self.optimizer, self.schedules, iteration, total)
        index = self.next_view()
        view, gt = self.views[index], self.target(index)
        scale = model.training_scale(iteration, total)
        if scale < 1.0:
            width, height = max(1, round(view.width * scale)), max(1, round(view.height * scale))
            gt = F.interpolate(gt[None], size=(height, width), mode="bilinear", align_corners=False)[0]
            view = view.scaled(width, height)

        neural, extra_losses = model(view, iteration, total, training=True)
        out = rasterize(neural.means, neural.quats, neural.scales, neural.opacities, neural.colors,
                        background=self.background, **view.render_args())
        c = model.config
        l1 = (out.image - gt).abs().mean()
        loss = (1.0 - c.lambda_dssim) * l1 + c.lambda_dssim * (1.0 - ssim_torch(out.image, gt))
        if neural.count:
            loss = loss + c.lambda_scale * neural.scales.prod(dim=1).mean()
        for term in extra_losses.values():
            loss = loss + term
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the loss became {loss.item()} at iteration {iteration}; the last checkpoint is "
                f"{self.run_dir / CHECKPOINT} (resume it with another seed or lower learning rates)")
        loss.backward()

        with torch.no_grad():
            if self.growth.collecting(iteration):
                self.growth.accumulate(model.anchors, neural, out.radii, out.screen_grad_norm())
            events = {}
            if self.growth.adjusting(iteration):
                events = self.growth.adjust(model.anchors, self.optimizer)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            mse = ((out.image.clamp(0, 1) - gt) ** 2).mean()
        return {"loss": float(loss.detach()), "psnr": float(-10 * torch.log10(mse.clamp_min(1e-10))),
                "gaussians": neural.count, **{f"densify_{k}": v for k, v in events.items()},
                **{k: float(v.detach()) for k, v in extra_losses.items()}}

    # -- the run -------------------------------------------------------------------------------------
    def checkpoint_interval(self) -> int:
        return max(1, math.ceil(self.total / max(1, self.spec.train.checkpoints)))

    def train(self, stop_after: int | None = None) -> None:
        """Train to the end (or until ``stop_after`` iterations, for tests of interruption)."""
        from tqdm import tqdm

        last = self.total if stop_after is None else min(self.total, stop_after)
        bar = tqdm(total=self.total, initial=self.iteration, disable=not self.progress, unit="it",
                   dynamic_ncols=True, desc=f"{self.spec.method} {Path(self.spec.scene).name}")
        psnr_ema = None
        interval = self.checkpoint_interval()
        self.model.train()
        try:
            while self.iteration < last:
                it = self.iteration + 1
                start = time.perf_counter()
                stats = self.step(it)
                self.train_seconds += time.perf_counter() - start
                self.iteration = it
                psnr_ema = stats["psnr"] if psnr_ema is None else 0.9 * psnr_ema + 0.1 * stats["psnr"]
                bar.update(1)
                if it % 10 == 0 or it == last:
                    bar.set_postfix(loss=f"{stats['loss']:.4f}", psnr=f"{psnr_ema:.2f}",
                                    anchors=self.model.anchors.num_anchors, refresh=False)
                if "densify_grown" in stats:
                    self.log.info("iteration %d: grew %d, pruned %d anchors -> %d", it, stats["densify_grown"],
                                  stats["densify_pruned"], stats["densify_anchors"])
                if it % self.spec.train.log_every == 0 or it == self.total:
                    self.log.info("iteration %d: loss %.5f psnr(ema) %.3f gaussians %d anchors %d %s", it,
                                  stats["loss"], psnr_ema, stats["gaussians"], self.model.anchors.num_anchors,
                                  " ".join(f"{k} {v:.5g}" for k, v in stats.items() if k in ("rate", "mask")))
                if it % interval == 0 or it == self.total:
                    self.save_checkpoint()
        except KeyboardInterrupt:
            self.save_checkpoint()  # the next `predictgs train` with the same options resumes here
            self.log.info("interrupted at iteration %d; checkpoint saved", self.iteration)
            raise
        finally:
            bar.close()

    # -- evaluation ----------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> tuple[dict, dict]:
        self.model.eval()
        try:
            return evaluate_model(self.model, self.scene, self.device, lpips=self.spec.train.lpips)
        finally:
            self.model.train()

    def metrics(self) -> tuple[dict, dict]:
        summary, per_view = self.evaluate()
        bits = self.model.estimated_bits()
        c = self.model.config
        result = {
            "method": self.spec.method,
            "benchmark": self.spec.benchmark,
            "scene": scene_name(self.spec.scene),
            "scene_path": str(self.spec.scene),
            "lmbda": getattr(c, "lmbda", 0.0),
            "iterations": self.iteration,
            "psnr": summary["PSNR"],
            "ssim": summary["SSIM"],
            "lpips": summary.get("LPIPS"),
            "lpips_vgg": summary.get("LPIPS_VGG"),
            "lpips_alex": summary.get("LPIPS_ALEX"),
            "num_test_views": len(per_view["PSNR"]),
            "num_anchors": self.model.kept_anchor_count(),
            "num_gaussians": self.model.active_gaussian_count(),
            "estimated_bits": bits,
            "estimated_size_bytes": sum(bits.values()) / 8.0,
            "train_seconds": self.train_seconds,
            "device": device_label(self.device),
            "voxel_size": self.model.voxel_size,
            **self.model.extra_metrics(),
        }
        return result, per_view

    def finish(self) -> dict:
        result, per_view = self.metrics()
        _write_json(self.run_dir / "metrics.json", result)
        _write_json(self.run_dir / "per_view.json", per_view)
        self.log.info("test: psnr %.3f ssim %.4f lpips %s size %.0f bytes (estimated)", result["psnr"],
                      result["ssim"], result["lpips"], result["estimated_size_bytes"])
        return result

    # -- checkpoints ---------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        state = {
            "iteration": self.iteration,
            "fingerprint": self.spec.fingerprint(),
            "train_seconds": self.train_seconds,
            "voxel_size": self.model.voxel_size,
            "extent": self.model.extent,
            "model": self.model.state_dict(),
            "extra": self.model.extra_state(),
            "optimizer": self.optimizer.state_dict(),
            "growth": self.growth.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "order": self.order_rng.bit_generator.state,
                "pending": list(self._order),
            },
        }
        path = self.run_dir / CHECKPOINT
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state["fingerprint"] != self.spec.fingerprint():
            raise ConfigError(f"{path} belongs to a run with another configuration")
        self.model.anchors.resize(state["model"]["anchors.positions"].shape[0])
        self.model.load_state_dict(state["model"])
        self.model.load_extra_state(state["extra"])
        self._build_optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        self.growth.load_state_dict(state["growth"])
        self.iteration = state["iteration"]
        self.train_seconds = state["train_seconds"]
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if state["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.order_rng.bit_generator.state = state["rng"]["order"]
        self._order = list(state["rng"]["pending"])


@torch.no_grad()
def render_test_view(model, camera, background: torch.Tensor, device: torch.device):
    """Render one camera with the test-time (quantised) model; returns the rasterizer output."""
    view = View.from_camera(camera, device)
    neural, _ = model(view, 1, 1, training=False)
    return rasterize(neural.means, neural.quats, neural.scales, neural.opacities, neural.colors,
                     background=background, **view.render_args())


@torch.no_grad()
def evaluate_model(model, scene: Scene, device: torch.device, lpips: bool = True) -> tuple[dict, dict]:
    """Test-view metrics of a model (the scene's test split; its training views if it has none)."""
    cameras = scene.test_cameras or scene.train_cameras
    background = torch.as_tensor(scene.background, dtype=torch.float32, device=device)
    renders = [render_test_view(model, c, background, device).image.clamp(0, 1).cpu() for c in cameras]
    targets = [scene.load_image(c) for c in cameras]
    return evaluate_images(renders, targets, [c.image_name for c in cameras], lpips=lpips)


def scene_name(path: str | Path) -> str:
    """A readable scene name: the folder name, skipping COLMAP-style sub-folders (dense/0, sparse/0)."""
    parts = [p for p in Path(path).parts if p not in ("/", "")]
    while len(parts) > 1 and (parts[-1].isdigit() or parts[-1] in ("dense", "sparse")):
        parts.pop()
    return parts[-1] if parts else str(path)


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, default=_json_default))


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _file_logger(path: Path) -> logging.Logger:
    """A logger appending to the run's train.log (one handler, reopened for every trainer)."""
    logger = logging.getLogger(f"predictgs.run.{path.parent.resolve()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    return logger


def save_spec(spec: RunSpec, run_dir: Path) -> None:
    dump_yaml(spec.to_dict(), Path(run_dir) / CONFIG)


def read_spec(run_dir: Path) -> dict:
    return load_yaml(Path(run_dir) / CONFIG)
