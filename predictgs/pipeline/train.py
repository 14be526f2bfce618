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
from ..guard import FolderLock, check_train_output, read_marker, write_marker
from ..io import check_output_dir, write_json
from ..methods import method_class, method_config
from ..metric_keys import QUALITY_KEYS
from ..model.anchors import VOXEL_FROM_CONFIG, VOXEL_FROM_PRESET
from ..presets import PRESETS, Preset
from ..runs import (CHECKPOINT, CONFIG, METRICS, PER_VIEW, TRAIN_LOG, RunSpec, check_spec, file_logger,
                    load_checkpoint, read_metrics, read_spec, save_checkpoint, save_spec, scene_name,
                    write_metrics)
from ..train.config import TrainConfig
from ..train.monitor import CSV_NAME, TrainMonitor
from ..train.trainer import Trainer

CONFIG_SECTIONS = ("train", "model", "model_by_method", "protocol", "benchmark", "preset")


def method_entry(by_method: Mapping, method: str) -> dict:
    """A method's entry of a ``model_by_method`` section, else its base method's (predictgs_sfp_only and
    predictgs_hacpp -> predictgs), as the workflow applies it."""
    if method in by_method:
        return by_method[method] or {}
    bases = [name for name in by_method if method.startswith(str(name) + "_")]
    return (by_method[max(bases, key=len)] or {}) if bases else {}


def deep_merge(base: Mapping, update: Mapping) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_preset(preset: str | None, overrides: Mapping, benchmark: str | None, config_file) -> Preset | None:
    """The preset of a run: ``preset`` (--preset), else the config file's ``preset:``, else the benchmark's
    name when a preset has it (``--benchmark mipnerf360`` selects the preset mipnerf360)."""
    if preset is None and "preset" in overrides and overrides["preset"] is None:
        return None  # `preset: null`: the methods' reference values, whatever the benchmark's name
    name = preset if preset is not None else overrides.get("preset")
    if name is None:
        label = benchmark or overrides.get("benchmark")
        return PRESETS.get(label) if isinstance(label, str) else None
    if not isinstance(name, str) or name not in PRESETS:
        where = "--preset" if preset is not None else f"preset in {config_file}"
        raise ConfigError(f"{where}: unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return PRESETS[name]


def build_spec(method: str, scene_path: Path, *, lmbda: float | None = None, iterations: int | None = None,
               config_file: Path | None = None, protocol: dict | None = None, benchmark: str | None = None,
               seed: int | None = None, device: str | None = None, rasterizer: str | None = None,
               preset: str | None = None) -> tuple[RunSpec, object]:
    """The run's full configuration: defaults < preset < config file < command-line options.
    -> (spec, model config)."""
    cls = method_class(method)
    overrides = load_yaml(config_file) if config_file else {}
    unknown = set(overrides) - set(CONFIG_SECTIONS)
    if unknown:
        raise ConfigError(f"unknown section(s) {', '.join(sorted(map(str, unknown)))} in {config_file}; "
                          f"expected {', '.join(CONFIG_SECTIONS)}")
    for section in ("train", "model", "model_by_method", "protocol"):
        if not isinstance(overrides.get(section) or {}, Mapping):
            raise ConfigError(f"{section}: expected a mapping in {config_file}, got {overrides[section]!r}")
    chosen = resolve_preset(preset, overrides, benchmark, config_file)
    preset_config = chosen.train_config(method) if chosen else {}
    by_method = method_entry(overrides.get("model_by_method") or {}, method)
    if not isinstance(by_method, Mapping):
        raise ConfigError(f"model_by_method.{method}: expected a mapping in {config_file}, got {by_method!r}")
    model_overrides = deep_merge(deep_merge(preset_config.get("model", {}), overrides.get("model") or {}), by_method)
    model_config = method_config(method, model_overrides)
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
    if benchmark is None:
        benchmark = overrides.get("benchmark", chosen.name if chosen else "custom")
    if not isinstance(benchmark, str) or not benchmark:
        raise ConfigError(f"benchmark: expected a name, got {benchmark!r}")
    protocol_dict = {**preset_config.get("protocol", {}), **(overrides.get("protocol") or {}), **(protocol or {})}
    proto = Protocol.from_dict(protocol_dict)
    spec = RunSpec(method=method, scene=str(Path(scene_path).resolve()), benchmark=benchmark,
                   protocol=proto.to_dict(), train=train_config, model=to_dict(model_config))
    return spec, model_config


def new_trainer(spec: RunSpec, model_config, scene, run_dir: Path, progress: bool = True,
                monitor: TrainMonitor | None = None) -> Trainer:
    """A trainer of the spec's method, initialised from the scene's points, that checkpoints into run_dir."""
    model = method_class(spec.method).from_scene(model_config, scene, seed=spec.train.seed)
    fingerprint = spec.fingerprint()
    return Trainer(model, scene, spec.train, log=file_logger(run_dir / TRAIN_LOG), progress=progress,
                   label=f"{spec.method} {scene_name(spec.scene)}", monitor=monitor,
                   checkpoint_hook=lambda trainer: save_checkpoint(run_dir, trainer.state_dict(), fingerprint))


def run_training(method: str, scene_path: Path, run_dir: Path, *, restart: bool = False, progress: bool = True,
                 stop_after: int | None = None, notify=None, tensorboard: bool = False,
                 tensorboard_images: int | None = None, **options) -> dict | None:
    """Train (or resume) a run. Returns metrics.json's content when the run is complete. The run folder is
    locked while the run is trained (:mod:`predictgs.guard`): a second writer is refused.

    A run that is already complete (its checkpoint at the last iteration, metrics.json and per_view.json
    written) is left as it is: nothing is trained, evaluated or written, and its metrics.json (with what
    ``encode`` added) is returned; ``notify`` (a function of one line of text) is told so. ``restart``
    discards the run and trains it again. The run folder gets a per-iteration ``train_log.csv``, and with
    ``tensorboard`` a TensorBoard log (a test view every ``tensorboard_images`` iterations)."""
    spec, model_config = build_spec(method, scene_path, **options)
    notify = notify or (lambda line: None)
    run_dir = check_output_dir(run_dir, "--out")
    check_train_output(run_dir, Path(scene_path))
    with FolderLock(run_dir, "run folder") as lock:  # taken now if the folder exists, else once it is made
        return _train_run(spec, model_config, method, scene_path, run_dir, lock, restart=restart,
                          progress=progress, stop_after=stop_after, notify=notify, tensorboard=tensorboard,
                          tensorboard_images=tensorboard_images, options=options)


def _train_run(spec: RunSpec, model_config, method: str, scene_path: Path, run_dir: Path, lock: FolderLock, *,
               restart: bool, progress: bool, stop_after: int | None, notify, tensorboard: bool,
               tensorboard_images: int | None, options: dict) -> dict | None:
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
    trained_out = state is not None and state.get("iteration") == spec.train.iterations
    if trained_out and stop_after is None:
        existing = read_metrics(run_dir)
        if existing.get("iterations") == spec.train.iterations and (run_dir / PER_VIEW).is_file():
            notify(f"{run_dir} is complete ({spec.train.iterations} iterations); nothing to do "
                   "(--restart retrains it)")
            if read_marker(run_dir) is None:  # a run folder of an earlier version
                write_marker(run_dir, "run")
            return existing
    scene = load_scene(Path(scene_path), spec.protocol)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock.ensure()
    if not resume:  # a new run starts from a clean directory
        for stale in (CHECKPOINT, TRAIN_LOG, METRICS, PER_VIEW, CSV_NAME):
            (run_dir / stale).unlink(missing_ok=True)
    elif not trained_out:
        # metrics.json describes the finished model: any written before (by `encode` of an unfinished
        # run) describe an earlier state of it.
        for stale in (METRICS, PER_VIEW):
            (run_dir / stale).unlink(missing_ok=True)
    monitor = TrainMonitor(run_dir, notify=notify, tensorboard=tensorboard,
                           image_every=tensorboard_images or max(1, spec.train.iterations // 10))
    trainer = new_trainer(spec, model_config, scene, run_dir, progress=progress, monitor=monitor)
    chosen = preset_of(spec, options)
    if (chosen is not None and chosen.voxel_size is not None and trainer.model.voxel_size_source == VOXEL_FROM_CONFIG
            and trainer.model.voxel_size == chosen.voxel_size):
        trainer.model.voxel_size_source = VOXEL_FROM_PRESET  # the dataset preset's value, not the user's
    if state is not None:
        try:
            trainer.load_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
            reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
            raise ConfigError(f"{checkpoint} cannot be resumed ({type(err).__name__}: {reason}); retrain the run "
                              "(--restart)") from None
        if not trained_out:
            trainer.log.info("resuming from iteration %d", trainer.iteration)
        if read_marker(run_dir) is None:  # a run folder of an earlier version
            write_marker(run_dir, "run")
    else:
        save_spec(spec, run_dir)
        write_marker(run_dir, "run")
        trainer.log.info("new run: %s on %s, %d primitives (voxel size %.6g, %s), device %s, rasterizer %s, "
                         "preset %s", method, scene.path, trainer.model.num_primitives, trainer.model.voxel_size,
                         trainer.model.voxel_size_source or "no voxel grid", trainer.device, trainer.backend,
                         chosen.name if chosen else "none")
        if chosen is not None and options.get("preset") is None:
            notify(f"settings of the preset {chosen.name} (benchmark {spec.benchmark}; `predictgs presets` "
                   "lists them, --preset chooses another)")
    if options.get("device") in (None, "auto") and spec.train.device == "auto" and trainer.device.type == "cpu":
        notify("no CUDA device found: training on the CPU (--device cpu asks for it and silences this note)")
    trainer.train(stop_after=stop_after)
    if trainer.iteration < trainer.total:
        return None
    return finish(trainer, spec, run_dir)


def preset_of(spec: RunSpec, options: Mapping) -> Preset | None:
    """The preset a run was built with (for its log): as :func:`build_spec` chose it."""
    config_file = options.get("config_file")
    overrides = load_yaml(config_file) if config_file else {}
    return resolve_preset(options.get("preset"), overrides, options.get("benchmark"), config_file)


def run_metrics(trainer: Trainer, spec: RunSpec) -> tuple[dict, dict]:
    """metrics.json and per_view.json of a trained model (its test-time model on the test views)."""
    model = trainer.model
    summary, per_view = evaluate_model(model, trainer.scene, trainer.device, lpips=spec.train.lpips,
                                       backend=trainer.backend)
    bits = model.estimated_bits()
    reference_bits = model.reference_bits(bits)
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
        # The reference code's accounting of the same model (what its papers publish), beside the file's
        # size that `predictgs encode` adds (size_bytes): docs/methods.md, "Two sizes".
        "reference_size_bytes": sum(reference_bits.values()) / 8.0,
        "reference_bits": reference_bits,
        "reference_accounting": type(model).reference_accounting,
        "reference_marked": model.reference_marks(),
        "train_seconds": trainer.train_seconds,
        "device": device_label(trainer.device),
        "rasterizer": trainer.backend,
        "voxel_size": model.voxel_size,
        "voxel_size_source": model.voxel_size_source,
        **model.extra_metrics(),
    }
    return result, per_view


def merge_metrics(existing: dict, result: dict) -> dict:
    """metrics.json after the training's evaluation: ``result`` merged into what the file holds, so that
    what other steps added (encode: size_bytes, section_bytes, times, ...) is kept. Once the run has been
    encoded, psnr/ssim/lpips are the decoded model's and the trained model's go to prequant_* (as encode
    itself does)."""
    merged = dict(existing)
    encoded = any(f"prequant_{key}" in existing for key in QUALITY_KEYS)
    for key, value in result.items():
        merged[f"prequant_{key}" if encoded and key in QUALITY_KEYS else key] = value
    return merged


def finish(trainer: Trainer, spec: RunSpec, run_dir: Path) -> dict:
    result, per_view = run_metrics(trainer, spec)
    merged = merge_metrics(read_metrics(run_dir), result)
    write_metrics(run_dir, merged)
    write_json(run_dir / PER_VIEW, per_view)
    trainer.log.info("test: psnr %.3f ssim %.4f lpips %s size %.0f bytes (estimated)", result["psnr"],
                     result["ssim"], result["lpips"], result["estimated_size_bytes"])
    return merged


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
