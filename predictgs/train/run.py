"""``predictgs train``: build a run from the command line and an optional YAML file, train or resume it,
and write its files."""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import load_yaml, plain, to_dict, update_dataclass
from ..data import Protocol, load_scene
from ..errors import ConfigError
from ..methods import method_class, new_model
from .loop import CHECKPOINT, CONFIG, RunSpec, TrainConfig, Trainer, read_spec, save_spec

CONFIG_SECTIONS = ("train", "model", "protocol", "benchmark")


def build_spec(method: str, scene_path: Path, *, lmbda: float | None = None, iterations: int | None = None,
               config_file: Path | None = None, protocol: dict | None = None, benchmark: str | None = None,
               seed: int | None = None, device: str | None = None) -> tuple[RunSpec, object]:
    """The run's full configuration: defaults < config file < command-line options."""
    cls = method_class(method)
    overrides = load_yaml(config_file) if config_file else {}
    unknown = set(overrides) - set(CONFIG_SECTIONS)
    if unknown:
        raise ConfigError(f"unknown section(s) {', '.join(sorted(unknown))} in {config_file}; "
                          f"expected {', '.join(CONFIG_SECTIONS)}")
    model_config = update_dataclass(cls.config_class(), overrides.get("model", {}), prefix="model.")
    if lmbda is not None:
        if not hasattr(model_config, "lmbda"):
            raise ConfigError(f"--lmbda applies to methods with an entropy model; {method} has none")
        if not lmbda > 0:
            raise ConfigError(f"--lmbda must be positive, got {lmbda}")
        model_config = update_dataclass(model_config, {"lmbda": float(lmbda)})
    train_overrides = dict(overrides.get("train", {}))
    for key, value in (("iterations", iterations), ("seed", seed), ("device", device)):
        if value is not None:
            train_overrides[key] = value
    train_config = update_dataclass(TrainConfig(), train_overrides, prefix="train.")
    if train_config.iterations <= 0:
        raise ConfigError(f"iterations must be positive, got {train_config.iterations}")
    protocol_dict = {**overrides.get("protocol", {}), **(protocol or {})}
    proto = Protocol.from_dict(protocol_dict)
    spec = RunSpec(method=method, scene=str(Path(scene_path).resolve()),
                   benchmark=benchmark or overrides.get("benchmark", "custom"), protocol=proto.to_dict(),
                   train=train_config, model=to_dict(model_config))
    return spec, model_config


def run_training(method: str, scene_path: Path, run_dir: Path, *, restart: bool = False, progress: bool = True,
                 stop_after: int | None = None, **options) -> dict | None:
    """Train (or resume) a run. Returns metrics.json's content when the run is complete."""
    spec, model_config = build_spec(method, scene_path, **options)
    run_dir = Path(run_dir)
    checkpoint = run_dir / CHECKPOINT
    if checkpoint.exists() and not restart and (run_dir / CONFIG).exists():
        saved, wanted = read_spec(run_dir), plain(spec.to_dict())
        if saved != wanted:
            changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
            raise ConfigError(f"{run_dir} holds a run with another configuration (differs in: "
                              f"{', '.join(changed)}); use --restart to overwrite it or choose another --out")
    resume = checkpoint.exists() and not restart
    scene = load_scene(Path(scene_path), spec.protocol)
    model = method_class(method).from_points(model_config, scene.points, scene.extent, seed=spec.train.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:  # a new run starts from a clean directory
        for stale in (CHECKPOINT, "train.log", "metrics.json", "per_view.json"):
            (run_dir / stale).unlink(missing_ok=True)
    trainer = Trainer(spec, model, scene, run_dir, progress=progress)
    if resume:
        trainer.load_checkpoint(checkpoint)
        trainer.log.info("resuming from iteration %d", trainer.iteration)
    else:
        save_spec(spec, run_dir)
        trainer.log.info("new run: %s on %s, %d anchors (voxel size %.6g), device %s", method, scene.path,
                         model.anchors.num_anchors, model.voxel_size, trainer.device)
    trainer.train(stop_after=stop_after)
    if trainer.iteration < trainer.total:
        return None
    return trainer.finish()


def load_run(run_dir: Path, device: str | torch.device = "cpu"):
    """The spec (dict, as saved) and the trained model of a run directory, from its checkpoint."""
    run_dir = Path(run_dir)
    checkpoint = run_dir / CHECKPOINT
    if not checkpoint.is_file() or not (run_dir / CONFIG).is_file():
        raise ConfigError(f"{run_dir} is not a run directory (needs {CONFIG} and {CHECKPOINT})")
    spec = read_spec(run_dir)
    state = torch.load(checkpoint, map_location=device, weights_only=False)
    model = new_model(spec["method"], spec["model"], state["extent"], state["voxel_size"],
                      state["model"]["anchors.positions"].shape[0])
    model.load_state_dict(state["model"])
    model.load_extra_state(state["extra"])
    return spec, model.to(device).eval()
