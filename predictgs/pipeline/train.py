"""``predictgs train``: build a run from the command line and an optional YAML file, train or resume it,
and write its files (see :mod:`predictgs.runs` for the run directory)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping

import torch

from ..config import load_yaml, plain, to_dict, update_dataclass, validate
from ..data import Protocol, load_scene
from ..errors import ConfigError
from ..evaluate import device_label, evaluate_model
from ..io import check_output_dir, write_json
from ..methods import method_class, method_config
from ..runs import (CHECKPOINT, CONFIG, METRICS, PER_VIEW, TRAIN_LOG, RunSpec, check_spec, file_logger,
                    load_checkpoint, read_spec, save_checkpoint, save_spec, scene_name, write_metrics)
from ..train.config import TrainConfig
from ..train.trainer import Trainer

CONFIG_SECTIONS = ("train", "model", "protocol", "benchmark")


def build_spec(method: str, scene_path: Path, *, lmbda: float | None = None, iterations: int | None = None,
               config_file: Path | None = None, protocol: dict | None = None, benchmark: str | None = None,
               seed: int | None = None, device: str | None = None, rasterizer: str | None = None) -> tuple[RunSpec, object]:
    """The run's full configuration: defaults < config file < command-line options. -> (spec, model config)."""
    cls = method_class(method)
    overrides = load_yaml(config_file) if config_file else {}
    unknown = set(overrides) - set(CONFIG_SECTIONS)
    if unknown:
        raise ConfigError(f"unknown section(s) {', '.join(sorted(map(str, unknown)))} in {config_file}; "
                          f"expected {', '.join(CONFIG_SECTIONS)}")
    for section in ("train", "model", "protocol"):
        if not isinstance(overrides.get(section) or {}, Mapping):
            raise ConfigError(f"{section}: expected a mapping in {config_file}, got {overrides[section]!r}")
    model_config = method_config(method, overrides.get("model") or {})
    train_overrides = dict(overrides.get("train") or {})
    for key, value in (("iterations", iterations), ("seed", seed), ("device", device), ("lmbda", lmbda),
                       ("rasterizer", rasterizer)):
        if value is not None:
            train_overrides[key] = value
    train_config = validate(update_dataclass(TrainConfig(), train_overrides, prefix="train."), prefix="train.")
    if cls.default_lmbda is None:
        if train_config.lmbda is not None:
            raise ConfigError(f"--lmbda applies to methods with an entropy model; {method} has none")
    elif train_config.lmbda is None:
        train_config = dataclasses.replace(train_config, lmbda=cls.default_lmbda)
    model_config = cls.resolve_config(model_config, train_config.lmbda)
    benchmark = benchmark or overrides.get("benchmark", "custom")
    if not isinstance(benchmark, str) or not benchmark:
        raise ConfigError(f"benchmark: expected a name, got {benchmark!r}")
    protocol_dict = {**(overrides.get("protocol") or {}), **(protocol or {})}
    proto = Protocol.from_dict(protocol_dict)
    spec = RunSpec(method=method, scene=str(Path(scene_path).resolve()), benchmark=benchmark,
                   protocol=proto.to_dict(), train=train_config, model=to_dict(model_config))
    return spec, model_config


def new_trainer(spec: RunSpec, model_config, scene, run_dir: Path, progress: bool = True) -> Trainer:
    """A trainer of the spec's method, initialised from the scene's points, that checkpoints into run_dir."""
    model = method_class(spec.method).from_scene(model_config, scene, seed=spec.train.seed)
    fingerprint = spec.fingerprint()
    return Trainer(model, scene, spec.train, log=file_logger(run_dir / TRAIN_LOG), progress=progress,
                   label=f"{spec.method} {scene_name(spec.scene)}",
                   checkpoint_hook=lambda trainer: save_checkpoint(run_dir, trainer.state_dict(), fingerprint))


def run_training(method: str, scene_path: Path, run_dir: Path, *, restart: bool = False, progress: bool = True,
                 stop_after: int | None = None, **options) -> dict | None:
    """Train (or resume) a run. Returns metrics.json's content when the run is complete."""
    spec, model_config = build_spec(method, scene_path, **options)
    run_dir = check_output_dir(run_dir, "--out")
    checkpoint = run_dir / CHECKPOINT
    if checkpoint.exists() and not restart and (run_dir / CONFIG).exists():
        saved, wanted = read_spec(run_dir), plain(spec.to_dict())
        if saved != wanted:
            changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
            raise ConfigError(f"{run_dir} holds a run with another configuration (differs in: "
                              f"{', '.join(changed)}); use --restart to overwrite it or choose another --out")
    resume = checkpoint.exists() and not restart
    state = load_checkpoint(checkpoint) if resume else None
    if state is not None and state.get("fingerprint") != spec.fingerprint():
        raise ConfigError(f"{checkpoint} belongs to a run with another configuration; use --restart")
    scene = load_scene(Path(scene_path), spec.protocol)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:  # a new run starts from a clean directory
        for stale in (CHECKPOINT, TRAIN_LOG, METRICS, PER_VIEW):
            (run_dir / stale).unlink(missing_ok=True)
    trainer = new_trainer(spec, model_config, scene, run_dir, progress=progress)
    if state is not None:
        try:
            trainer.load_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
            reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
            raise ConfigError(f"{checkpoint} cannot be resumed ({type(err).__name__}: {reason}); retrain the run "
                              "(--restart)") from None
        trainer.log.info("resuming from iteration %d", trainer.iteration)
    else:
        save_spec(spec, run_dir)
        trainer.log.info("new run: %s on %s, %d primitives (voxel size %.6g), device %s, rasterizer %s", method,
                         scene.path, trainer.model.num_primitives, trainer.model.voxel_size, trainer.device,
                         trainer.backend)
    trainer.train(stop_after=stop_after)
    if trainer.iteration < trainer.total:
        return None
    return finish(trainer, spec, run_dir)


def run_metrics(trainer: Trainer, spec: RunSpec) -> tuple[dict, dict]:
    """metrics.json and per_view.json of a trained model (its test-time model on the test views)."""
    model = trainer.model
    summary, per_view = evaluate_model(model, trainer.scene, trainer.device, lpips=spec.train.lpips,
                                       backend=trainer.backend)
    bits = model.estimated_bits()
    result = {
        "method": spec.method,
        "method_label": type(model).label,
        "benchmark": spec.benchmark,
        "scene": scene_name(spec.scene),
        "scene_path": str(spec.scene),
        "lmbda": spec.train.lmbda if spec.train.lmbda is not None else 0.0,
        "seed": spec.train.seed,
        "iterations": trainer.iteration,
        "image_size": trainer.scene.summary()["image_size"],  # [width, height] of the views (the most common)
        "psnr": summary["PSNR"],
        "ssim": summary["SSIM"],
        "lpips": summary.get("LPIPS"),
        "lpips_vgg": summary.get("LPIPS_VGG"),
        "lpips_alex": summary.get("LPIPS_ALEX"),
        "num_test_views": len(per_view["PSNR"]),
        **model.counts(),
        "estimated_bits": bits,
        "estimated_size_bytes": sum(bits.values()) / 8.0,
        "train_seconds": trainer.train_seconds,
        "device": device_label(trainer.device),
        "rasterizer": trainer.backend,
        "voxel_size": model.voxel_size,
        **model.extra_metrics(),
    }
    return result, per_view


def finish(trainer: Trainer, spec: RunSpec, run_dir: Path) -> dict:
    result, per_view = run_metrics(trainer, spec)
    write_metrics(run_dir, result)
    write_json(run_dir / PER_VIEW, per_view)
    trainer.log.info("test: psnr %.3f ssim %.4f lpips %s size %.0f bytes (estimated)", result["psnr"],
                     result["ssim"], result["lpips"], result["estimated_size_bytes"])
    return result


def load_run(run_dir: Path, device: str | torch.device = "cpu"):
    """The spec (config.yaml as saved, checked, its protocol and train sections completed with defaults)
    and the trained model of a run directory, from its checkpoint. A damaged or foreign run directory is a
    ConfigError naming the file."""
    run_dir = Path(run_dir)
    checkpoint = run_dir / CHECKPOINT
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a run directory (not a folder)")
    if not (run_dir / CONFIG).is_file():
        raise ConfigError(f"{run_dir} is not a run directory (needs {CONFIG} and {CHECKPOINT})")
    spec = check_spec(read_spec(run_dir), run_dir / CONFIG)
    try:
        config = method_config(spec["method"], spec["model"])
    except ConfigError as err:
        raise ConfigError(f"{run_dir / CONFIG}: {err}") from None
    state = load_checkpoint(checkpoint, map_location=device)
    try:
        model = method_class(spec["method"]).empty(config, state["extent"], state["voxel_size"],
                                                   state["num_primitives"])
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise ConfigError(f"{checkpoint} does not hold a {spec['method']} model as {CONFIG} describes ({reason}); "
                          "retrain the run (--restart)") from None
    return spec, model.to(device).eval()


__all__ = ["build_spec", "run_training", "load_run", "new_trainer", "finish"]
