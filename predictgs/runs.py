"""Run directories: what a run is (:class:`RunSpec`) and the files that hold it.

    <run>/config.yaml      the RunSpec: everything needed to rerun (method, scene, protocol, train, model)
    <run>/train.log        the trainer's log (appended across resumptions)
    <run>/checkpoint.pt    the latest training state (tensors and plain values; loaded weights_only)
    <run>/metrics.json     test metrics of the trained model, estimated bits; `encode` adds the
                           bitstream's size and times (each writer merges its entries: none drops another's)
    <run>/per_view.json    per-test-view metrics

Every file is written atomically (``predictgs.io``). Run directories travel between people and
clusters, so nothing in them is trusted to run code: checkpoints are read with
``torch.load(weights_only=True)`` and hold only tensors and plain Python values.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import dump_yaml, load_yaml, to_dict, update_dataclass, validate
from .data.scene import Protocol
from .errors import ConfigError
from .io import save_torch_atomic, write_json
from .parse import HugeInt, ParseError, load_json_text
from .train.config import TrainConfig

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.yaml"
METRICS = "metrics.json"
PER_VIEW = "per_view.json"
TRAIN_LOG = "train.log"
CHECKPOINT_FORMAT = "predictgs-checkpoint"
CHECKPOINT_VERSION = 2


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


def save_spec(spec: RunSpec, run_dir: Path) -> None:
    dump_yaml(spec.to_dict(), Path(run_dir) / CONFIG)


def read_spec(run_dir: Path) -> dict:
    return load_yaml(Path(run_dir) / CONFIG)


def check_spec(spec, path: Path) -> dict:
    """A run's config.yaml (as read by :func:`read_spec`), checked: method, scene and benchmark names,
    the protocol, the train section (types and ranges) and a model mapping; the method's model
    configuration is checked where the method is known (``pipeline.train.load_run``). Returns the spec
    with its protocol and train sections complete (defaults filled in). ConfigError naming ``path``."""
    if not isinstance(spec, dict):
        raise ConfigError(f"{path} does not describe a run (not a mapping)")
    for key in ("method", "scene"):
        if not isinstance(spec.get(key), str) or not spec[key]:
            raise ConfigError(f"{path} does not describe a run: {key} is {spec.get(key)!r}")
    if not isinstance(spec.get("benchmark", "custom"), str):
        raise ConfigError(f"{path}: benchmark must be a name, got {spec['benchmark']!r}")
    for key in ("protocol", "train", "model"):
        if key not in spec or not isinstance(spec[key], dict):
            raise ConfigError(f"{path} does not describe a run: {key} is {spec.get(key, 'missing')!r}, "
                              "expected a mapping")
    try:
        protocol = Protocol.from_dict(spec["protocol"]).to_dict()
        train = to_dict(validate(update_dataclass(TrainConfig(), spec["train"], prefix="train."), prefix="train."))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return {**spec, "protocol": protocol, "train": train}


def save_checkpoint(run_dir: Path, state: dict, fingerprint: str) -> Path:
    """The trainer's state (``Trainer.state_dict()``) with the run's fingerprint, atomically."""
    return save_torch_atomic({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                              "fingerprint": fingerprint, **state}, Path(run_dir) / CHECKPOINT)


def refusal_reason(err: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in a few words (torch's own message suggests
    loading with weights_only=False, which is exactly what must not be done with a file of unknown origin)."""
    text = str(err)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return f"it holds a Python object ({found.group(1)}), which is never unpickled"
    if "Weights only load failed" in text:
        return "it holds Python objects other than tensors and plain values, which are never unpickled"
    first = text.splitlines()[0][:160] if text else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def load_state_file(path: Path, what: str, advice: str, map_location="cpu") -> dict:
    """A file written with ``save_torch_atomic``, loaded with ``torch.load(weights_only=True)``: a file that
    cannot be read, or holds anything but tensors and plain values (a foreign or malicious pickle), is a
    one-line ConfigError ("... cannot be read as ``what`` (why); ``advice``"), without running its code."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except OSError as err:
        raise ConfigError(f"{path} cannot be read: {err.strerror or err}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError, KeyError,
            IndexError, UnicodeDecodeError, MemoryError, RecursionError) as err:
        raise ConfigError(f"{path} cannot be read as {what} ({refusal_reason(err)}); {advice}") from None


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """A checkpoint written by :func:`save_checkpoint`. Anything else (an older format, a foreign or
    malicious pickle) is refused with a one-line error, without running any of its code."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} is missing or not a file; retrain the run (--restart)")
    state = load_state_file(path, "a checkpoint of this version", "checkpoints of earlier versions cannot be "
                            "resumed: retrain the run (--restart)", map_location)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path} is not a predictgs checkpoint; retrain the run (--restart)")
    if state.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(f"{path} is a version {state.get('version')} checkpoint; this version reads version "
                          f"{CHECKPOINT_VERSION}: retrain the run (--restart)")
    return state


def read_metrics(run_dir: Path) -> dict:
    """metrics.json of a run directory ({} when there is none); a damaged file is a one-line error."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return {}
    if not path.is_file():
        raise ConfigError(f"{path} is not a file; remove it and rerun the training to rewrite it")
    try:
        data = load_json_text(path.read_text(encoding="utf-8"))
    except ParseError as err:
        raise ConfigError(f"{path}: {err}; rerun the training to rewrite it") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ConfigError(f"{path} cannot be read as JSON ({type(err).__name__}); rerun the training to rewrite it") \
            from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a JSON object")
    try:
        huge = _huge_entry(data)
    except RecursionError:
        raise ConfigError(f"{path} is nested too deeply to be metrics; rerun the training to rewrite it") from None
    if huge is not None:
        raise ConfigError(f"{path}: {huge[0]} is {huge[1]!r}, not a metric; rerun the training to rewrite it")
    return data


def _huge_entry(value, key: str = "") -> tuple[str, object] | None:
    """The first (dotted key, value) of a HugeInt in nested JSON values (no metric is that large)."""
    if isinstance(value, HugeInt):
        return key or "a value", value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for name, item in items:
        found = _huge_entry(item, f"{key}.{name}" if key else str(name))
        if found is not None:
            return found
    return None


def write_metrics(run_dir: Path, metrics: dict) -> None:
    write_json(Path(run_dir) / METRICS, metrics)


def file_logger(path: Path) -> logging.Logger:
    """A logger appending to a run's train.log (one handler, reopened for every trainer)."""
    path = Path(path)
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


def scene_name(path: str | Path) -> str:
    """A readable scene name: the folder name, skipping COLMAP-style sub-folders (dense/0, sparse/0)."""
    parts = [p for p in Path(path).parts if p not in ("/", "")]
    while len(parts) > 1 and (parts[-1].isdigit() or parts[-1] in ("dense", "sparse")):
        parts.pop()
    return parts[-1] if parts else str(path)
