"""What ``predictgs encode | decode | eval`` do: file handling, timing, metrics. The commands in cli.py only
parse their options and call these.

- :func:`encode_run`: encode a run directory's model, decode the file again (timed, and checked against
  what the encoder stored), evaluate the decoded model on the run's scene, and record sizes, times,
  coded bits against the entropy model's estimate and the decoded metrics in RUN_DIR/metrics.json.
- :func:`decode_file`: a .pgs file -> a decoded model directory.
- :func:`evaluate_decoded`: a decoded model directory -> its metrics.json (quality and rendering speed).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from ..errors import BitstreamError, ConfigError
from . import DEFAULT_CHUNK_ANCHORS, decode_model, encode_model
from .arithmetic import torchac
from .decoded import load_decoded, save_decoded

QUALITY_KEYS = ("psnr", "ssim", "lpips", "lpips_vgg", "lpips_alex")
SUMMARY_KEYS = {"psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "lpips_vgg": "LPIPS_VGG",
                "lpips_alex": "LPIPS_ALEX"}
MAX_FILE_BYTES = 1 << 34  # refuse to read anything larger into memory
DECODED_KIND = "decoded_model"  # metrics of `predictgs eval`; the run's own metrics.json is the table row


def read_bitstream(path: Path) -> bytes:
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a .pgs file")
    size = path.stat().st_size  # FileNotFoundError for a missing file
    if size > MAX_FILE_BYTES:
        raise BitstreamError(f"file: {path} is {size} bytes, larger than any plausible bitstream")
    return path.read_bytes()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_json(path: Path, data: dict) -> None:
    from ..train.loop import _json_default

    _write_atomic(Path(path), json.dumps(data, indent=2, default=_json_default).encode())


def coding_report(estimated: dict[str, float], section_bytes: dict[str, int]) -> tuple[dict, dict]:
    """Coded bits per stream and their gap to the entropy model's estimate, in percent."""
    coded = {name: 8 * size for name, size in section_bytes.items() if name != "container"}
    gaps = {name: 100.0 * (coded[name] - est) / est for name, est in estimated.items()
            if name in coded and est > 0}
    return coded, gaps


def encode_run(run_dir: Path, out_path: Path, *, evaluate: bool = True, device: str | None = None,
               chunk_anchors: int = DEFAULT_CHUNK_ANCHORS, mlp_precision: str = "fp32", progress=None) -> dict:
    """Encode RUN_DIR's model into ``out_path``; returns the entries added to RUN_DIR/metrics.json."""
    from ..data import load_scene
    from ..train.loop import evaluate_model, resolve_device, scene_name
    from ..train.run import load_run

    run_dir, out_path = Path(run_dir), Path(out_path)
    spec, model = load_run(run_dir, "cpu")
    info = {"scene": scene_name(spec["scene"]), "benchmark": spec.get("benchmark"), "protocol": spec["protocol"]}
    torchac()  # loaded (and on first use compiled, ~20 s) outside the timed coding
    start = time.perf_counter()
    encoded = encode_model(model, spec["method"], spec["model"], info, chunk_anchors=chunk_anchors,
                           mlp_precision=mlp_precision)
    encode_seconds = time.perf_counter() - start
    _write_atomic(out_path, encoded.data)

    start = time.perf_counter()
    decoded = decode_model(read_bitstream(out_path))
    decode_seconds = time.perf_counter() - start
    check_round_trip(encoded, decoded)

    coded, gaps = coding_report(model.estimated_bits(), encoded.section_bytes)
    floor_bits = encoded.expected.get("coder_floor_bits", {})
    _, floor_gaps = coding_report(floor_bits, encoded.section_bytes)
    entries = {
        "bitstream": str(out_path),
        "size_bytes": out_path.stat().st_size,
        "section_bytes": encoded.section_bytes,
        "encode_seconds": encode_seconds,
        "decode_seconds": decode_seconds,
        "codec_device": "cpu",
        "mlp_precision": mlp_precision,
        "coded_bits": coded,
        "coding_gap_percent": gaps,
        # The estimate with the entropy model's 1e-6 likelihood floor replaced by the coder's 2^-16,
        # and the gap of the coded streams to it (see docs/bitstream.md, "Coded size and estimate").
        "coder_floor_bits": floor_bits,
        "coding_gap_percent_coder_floor": floor_gaps,
        "num_anchors_coded": decoded.model.anchors.num_anchors,
    }
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    if evaluate:
        eval_device = resolve_device(device or spec["train"].get("device", "auto"))
        scene = load_scene(Path(spec["scene"]), spec["protocol"])
        summary, per_view = evaluate_model(decoded.model.to(eval_device), scene, eval_device,
                                           lpips=spec["train"].get("lpips", True))
        _write_json(run_dir / "per_view_decoded.json", per_view)
        for key, name in SUMMARY_KEYS.items():
            entries[f"decoded_{key}"] = summary.get(name)
        for key in QUALITY_KEYS:
            # The pre-encode (test-mode) values are kept once: a second encode must not overwrite them
            # with the decoded values written by the first.
            if f"prequant_{key}" not in metrics and key in metrics:
                entries[f"prequant_{key}"] = metrics[key]
            entries[key] = entries[f"decoded_{key}"]
    metrics.update(entries)
    _write_json(metrics_path, metrics)
    return entries


def check_round_trip(encoded, decoded) -> None:
    """The decoder must reproduce the encoder's quantised values exactly; anything else is a bug."""
    expected = encoded.expected.get("decoded")
    if expected is None:
        return
    got = decoded.model.decoded
    for name in ("attributes", "scaling", "offsets", "masks"):
        if not torch.equal(getattr(expected, name), getattr(got, name)):
            raise RuntimeError(f"codec bug: decoded {name} differ from the encoder's quantised values")
    if not torch.equal(encoded.expected["positions"], decoded.model.anchors.positions):
        raise RuntimeError("codec bug: decoded anchor positions differ from the encoder's")


def decode_file(path: Path, out_dir: Path) -> dict:
    path = Path(path)
    data = read_bitstream(path)
    torchac()  # loaded (and on first use compiled) outside the timed decoding
    start = time.perf_counter()
    decoded = decode_model(data)
    seconds = time.perf_counter() - start
    info = {"source": str(path), "run": decoded.header.get("run", {})}
    save_decoded(decoded.model, decoded.method, decoded.header["model"], Path(out_dir), info)
    return {"method": decoded.method, "num_anchors": decoded.model.anchors.num_anchors,
            "size_bytes": len(data), "section_bytes": decoded.section_bytes, "decode_seconds": seconds,
            "out": str(out_dir)}


@torch.no_grad()
def measure_fps(model, cameras, background: torch.Tensor, device: torch.device, min_seconds: float = 1.0,
                max_passes: int = 10) -> tuple[float, int]:
    """Frames per second rendering ``cameras`` at their resolution (after one warm-up frame); passes over
    the cameras repeat until ``min_seconds`` have passed. -> (fps, frames timed)."""
    from ..train.loop import render_test_view

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    render_test_view(model, cameras[0], background, device)
    sync()
    frames, start = 0, time.perf_counter()
    for _ in range(max_passes):
        for camera in cameras:
            render_test_view(model, camera, background, device)
            frames += 1
        sync()
        if time.perf_counter() - start >= min_seconds:
            break
    return frames / (time.perf_counter() - start), frames


def evaluate_decoded(directory: Path, scene_path: Path, *, protocol: dict | None = None, device: str = "auto",
                     lpips: bool = True) -> dict:
    """Metrics of a decoded model directory on a scene; written to DIR/metrics.json and DIR/per_view.json."""
    from ..data import load_scene
    from ..train.loop import device_label, evaluate_model, resolve_device

    directory = Path(directory)
    torch_device = resolve_device(device)
    info, model = load_decoded(directory, torch_device)
    run_info = info.get("run") or {}
    merged = {**(run_info.get("protocol") or {}), **(protocol or {})}
    scene = load_scene(Path(scene_path), merged)
    cameras = scene.test_cameras or scene.train_cameras
    if not cameras:
        raise ConfigError(f"{scene_path} has no cameras to evaluate")
    summary, per_view = evaluate_model(model, scene, torch_device, lpips=lpips)
    background = torch.as_tensor(scene.background, dtype=torch.float32, device=torch_device)
    fps, frames = measure_fps(model, cameras, background, torch_device)
    metrics = {
        "kind": DECODED_KIND,
        "method": info.get("method"),
        "scene": str(scene_path),
        "source": info.get("source"),
        "protocol": merged,
        **{key: summary.get(name) for key, name in SUMMARY_KEYS.items()},
        "num_test_views": len(cameras),
        "num_anchors": model.kept_anchor_count(),
        "num_gaussians": model.active_gaussian_count(),
        "fps": fps,
        "fps_frames": frames,
        "resolution": [cameras[0].width, cameras[0].height],
        "device": device_label(torch_device),
        "per_view": "per_view.json",
    }
    _write_json(directory / "per_view.json", per_view)
    _write_json(directory / "metrics.json", metrics)
    return metrics
