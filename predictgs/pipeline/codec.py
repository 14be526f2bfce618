"""What ``predictgs encode | decode | eval`` do: file handling, timing, metrics. The commands in cli.py only
parse their options and call these.

- :func:`encode_model` / :func:`decode_model`: a model <-> the bytes of a .pgs file (the method's coded
  state in the codec's container, with the model configuration in the header).
- :func:`encode_run`: encode a run directory's model, decode the file again (timed, and checked against
  the encoder's test-time model), evaluate the decoded model on the run's scene, and record sizes,
  times, coded bits against the estimate and the decoded metrics in RUN_DIR/metrics.json.
- :func:`decode_file`: a .pgs file -> a decoded model directory (``model.pt`` + ``config.yaml``).
- :func:`evaluate_decoded`: a decoded model directory -> its metrics.json (quality and rendering speed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..codec import CodedState, read_bitstream, write_bitstream
from ..codec.arithmetic import warm_up
from ..codec.container import crc32
from ..config import dump_yaml, load_yaml
from ..errors import BitstreamError, ConfigError
from ..evaluate import FPS_MIN_SECONDS, device_label, evaluate_model, measure_fps, resolve_device, test_cameras
from ..data import Protocol, load_scene
from ..entropy.anchor import MAX_CHUNK_ANCHORS, coding_device
from ..guard import (FolderLock, check_bitstream_output, check_decoded_output, folder_lock, remove_stale_siblings,
                     replace_folder, temporary_sibling, write_marker)
from ..io import check_output_dir, check_output_file, save_torch_atomic, write_atomic, write_json
from ..methods import method_class, method_config, registry
from ..metric_keys import QUALITY_KEYS
from ..render import resolve_backend
from ..progress import stages
from ..runs import load_state_file, read_metrics, scene_name, write_metrics
from .train import load_run

SUMMARY_KEYS = {"psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "lpips_vgg": "LPIPS_VGG",
                "lpips_alex": "LPIPS_ALEX"}
MAX_FILE_BYTES = 1 << 34  # refuse to read anything larger into memory
DECODED_KIND = "decoded_model"  # metrics of `predictgs eval`; the run's own metrics.json is the table row
MLP_PRECISIONS = ("fp32", "fp16")
MODEL_FILE = "model.pt"
CONFIG_FILE = "config.yaml"
DECODED_FORMAT = "predictgs-decoded-model"
DECODED_VERSION = 2


@dataclass
class EncodedModel:
    data: bytes
    section_bytes: dict[str, int]  # payload bytes per section, plus "container" (preamble, header, table)
    source: object  # the model the file describes (the trained one, or its float16-rounded copy)


@dataclass
class DecodedModel:
    method: str
    header: dict
    model: object
    section_bytes: dict[str, int]


def model_config_dict(model) -> dict:
    return dataclasses.asdict(model.config)


def encode_model(model, info: dict | None = None, chunk_anchors: int | None = None,
                 mlp_precision: str = "fp32") -> EncodedModel:
    """The bitstream of a trained model. ``info``: JSON-able facts carried in the header (scene, protocol).

    ``mlp_precision="fp16"`` stores every network weight as float16: the encoder codes with a copy of
    the model whose weights are rounded to float16 (the context model's CDFs included), so the file still
    decodes exactly to the model it describes; that model differs from the trained one by the rounding."""
    if mlp_precision not in MLP_PRECISIONS:
        raise ConfigError(f"mlp precision must be one of {', '.join(MLP_PRECISIONS)}, got {mlp_precision!r}")
    if chunk_anchors is not None and (isinstance(chunk_anchors, bool) or not isinstance(chunk_anchors, int)
                                      or not 1 <= chunk_anchors <= MAX_CHUNK_ANCHORS):
        raise ConfigError(f"chunk_anchors must be an integer in [1, {MAX_CHUNK_ANCHORS}] (the decoder's limit), "
                          f"got {chunk_anchors!r}")
    half = mlp_precision == "fp16"
    source = model.rounded_to_half() if half else model
    coded = source.coded_state(half_networks=half, chunk_anchors=chunk_anchors)
    header = {"model": model_config_dict(model)}
    if info:
        header["run"] = info
    data = write_bitstream(type(model).name, header, coded)
    sizes = coded.section_bytes()
    sizes["container"] = len(data) - sum(sizes.values())
    return EncodedModel(data, sizes, source)


def check_bitstream(data: bytes):
    """The checks a file passes before any decoding work (no coder is loaded, nothing is entropy-decoded):
    the whole container (magic, version, method, every section's length, then every CRC) and the
    evaluation protocol the header records, which ``predictgs eval`` uses. -> the container."""
    container = read_bitstream(data, registry())
    run = container.header.get("run")
    if run is not None:
        if not isinstance(run, dict):
            raise BitstreamError(f"header: run must be a JSON object, got {type(run).__name__}")
        try:
            Protocol.from_dict(run.get("protocol") or {})
        except ConfigError as err:
            message = str(err)
            raise BitstreamError(f"header: run.{message if message.startswith('protocol') else 'protocol: ' + message}"
                                 ) from None
    return container


def decode_model(data: bytes, device: str | torch.device | None = None) -> DecodedModel:
    """Decode a .pgs file's bytes into the method's model, in eval mode on the CPU. ``device``: where
    the coding networks run (default the CPU; the coder itself always runs on the CPU).

    Order of checks: container (magic, version, method, lengths, CRCs) and the header's evaluation
    protocol (:func:`check_bitstream`), the model configuration and its declared ranges, then the method's
    own checks (section list, header fields and size limits, the anchor positions whose count must match
    the header's) before the model is allocated."""
    container = check_bitstream(data)
    header = container.header
    model_config = header.get("model")
    if not isinstance(model_config, dict):
        raise BitstreamError("header: missing model configuration")
    try:
        config = method_config(container.method, model_config)
    except ConfigError as err:
        raise BitstreamError(f"header: invalid model configuration ({err})") from None
    coded = CodedState({k: v for k, v in header.items() if k not in ("model", "run")}, container.sections)
    with coding_device(device):
        model = method_class(container.method).from_coded(config, coded)
    sizes = container.section_bytes()
    sizes["container"] = len(data) - sum(sizes.values())
    return DecodedModel(container.method, header, model, sizes)


def read_bitstream_file(path: Path) -> bytes:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder, not a .pgs file")
    if not path.exists():
        raise ConfigError(f"bitstream not found: {path}")
    if not path.is_file():  # a pipe or a device: reading might never end
        raise ConfigError(f"{path} is not a regular file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise BitstreamError(f"file: {path} is {size} bytes, larger than any plausible bitstream")
    return path.read_bytes()


def coding_report(estimated: dict[str, float], section_bytes: dict[str, int]) -> tuple[dict, dict]:
    """Coded bits per stream and their gap to the estimate, in percent."""
    coded = {name: 8 * size for name, size in section_bytes.items() if name != "container"}
    gaps = {name: 100.0 * (coded[name] - est) / est for name, est in estimated.items()
            if name in coded and est > 0}
    return coded, gaps


def check_round_trip(source, decoded) -> None:
    """The decoded model must be the encoder's test-time model exactly; anything else is a bug."""
    expected, got = source.cached_test_state(), decoded.cached_test_state()
    if expected.keys() != got.keys():
        raise RuntimeError(f"codec bug: decoded test state has {sorted(got)}, expected {sorted(expected)}")
    for name, tensor in expected.items():
        if not torch.equal(tensor.cpu(), got[name].cpu()):
            raise RuntimeError(f"codec bug: decoded {name} differ from the encoder's test-time values")


def encode_run(run_dir: Path, out_path: Path, *, evaluate: bool = True, device: str | None = None,
               chunk_anchors: int | None = None, mlp_precision: str = "fp32", progress: bool = False) -> dict:
    """Encode RUN_DIR's model into ``out_path``; returns the entries added to RUN_DIR/metrics.json. The run
    folder is locked meanwhile (it is read, and its metrics.json rewritten)."""
    run_dir, out_path = Path(run_dir), Path(out_path)
    check_output_file(out_path, "--output")
    check_bitstream_output(out_path, run_dir)
    # Locked only when it looks like a run (load_run explains anything else, and no lock file is left there).
    with FolderLock(run_dir, "run folder") if (run_dir / "config.yaml").is_file() else contextlib.nullcontext():
        return _encode_run(run_dir, out_path, evaluate=evaluate, device=device, chunk_anchors=chunk_anchors,
                           mlp_precision=mlp_precision, progress=progress)


def _encode_run(run_dir: Path, out_path: Path, *, evaluate: bool, device: str | None, chunk_anchors: int | None,
                mlp_precision: str, progress: bool) -> dict:
    # Every input is read (and so checked) before anything is written: the run, its metrics, and for the
    # evaluation the device, the rasterizer and the scene.
    spec, model = load_run(run_dir, "cpu")
    metrics = read_metrics(run_dir)
    train = spec["train"]
    if evaluate:
        eval_device = resolve_device(device or train["device"])
        backend = resolve_backend(train["rasterizer"], eval_device)
        scene = load_scene(Path(spec["scene"]), spec["protocol"])
    info = {"scene": scene_name(spec["scene"]), "benchmark": spec.get("benchmark"), "protocol": spec["protocol"]}
    with stages(["encode", "decode and check", "evaluate"][:3 if evaluate else 2], progress, "encode") as step:
        step("encode")
        warm_up()  # the coder's tables, built outside the timed coding
        start = time.perf_counter()
        encoded = encode_model(model, info, chunk_anchors=chunk_anchors, mlp_precision=mlp_precision)
        encode_seconds = time.perf_counter() - start
        write_atomic(out_path, encoded.data)

        step("decode and check")
        start = time.perf_counter()
        decoded = decode_model(read_bitstream_file(out_path))
        decode_seconds = time.perf_counter() - start
        check_round_trip(encoded.source, decoded.model)
        if evaluate:
            step("evaluate")
            summary, per_view = evaluate_model(decoded.model.to(eval_device), scene, eval_device,
                                               lpips=train["lpips"], backend=backend, progress=progress)

    estimated = encoded.source.estimated_bits()
    coded, gaps = coding_report(estimated, encoded.section_bytes)
    entries = {
        "bitstream": str(out_path),
        "size_bytes": out_path.stat().st_size,
        "bitstream_crc32": crc32(encoded.data),  # the workflow checks the file against these two
        "section_bytes": encoded.section_bytes,
        "encode_seconds": encode_seconds,
        "decode_seconds": decode_seconds,
        "codec_device": "cpu",
        "mlp_precision": mlp_precision,
        "coded_bits": coded,
        "coded_estimate_bits": estimated,
        "coding_gap_percent": gaps,
        "num_anchors_coded": decoded.model.counts()["num_anchors"],
    }
    if evaluate:
        write_json(run_dir / "per_view_decoded.json", per_view)
        for key, name in SUMMARY_KEYS.items():
            entries[f"decoded_{key}"] = summary.get(name)
        for key in QUALITY_KEYS:
            # The pre-encode (test-mode) values are kept once: a second encode must not overwrite them
            # with the decoded values written by the first.
            if f"prequant_{key}" not in metrics and key in metrics:
                entries[f"prequant_{key}"] = metrics[key]
            entries[key] = entries[f"decoded_{key}"]
    metrics.update(entries)
    write_metrics(run_dir, metrics)
    return entries


# -- decoded model directories --------------------------------------------------------------------------
def save_decoded(model, method: str, out_dir: Path, info: dict | None = None) -> None:
    """``model.pt`` (the model's state and its test-time values, tensors and plain values only) and
    ``config.yaml`` (method, model configuration, where it came from)."""
    out_dir = check_output_dir(out_dir, "--output")
    config = model_config_dict(model)
    state = {
        "format": DECODED_FORMAT,
        "version": DECODED_VERSION,
        "method": method,
        "model": config,
        "extent": model.extent,
        "voxel_size": model.voxel_size,
        "num_primitives": model.num_primitives,
        "state": model.state_dict(),
        "test_state": model.cached_test_state(),
    }
    save_torch_atomic(state, out_dir / MODEL_FILE)
    dump_yaml({"method": method, "model": config, **(info or {})}, out_dir / CONFIG_FILE)


def load_decoded(directory: Path, device: str | torch.device = "cpu"):
    """(config.yaml content, model in eval mode) of a directory written by ``predictgs decode``."""
    directory = Path(directory)
    path = directory / MODEL_FILE
    if not path.is_file() or not (directory / CONFIG_FILE).is_file():
        raise ConfigError(f"{directory} is not a decoded model directory (needs {MODEL_FILE} and {CONFIG_FILE}; "
                          "write one with `predictgs decode FILE -o DIR`)")
    state = load_state_file(path, "a decoded model", "decode the bitstream again")
    if not isinstance(state, dict) or state.get("format") != DECODED_FORMAT:
        raise ConfigError(f"{path} is not a decoded model written by `predictgs decode`")
    if state.get("version") != DECODED_VERSION:
        raise ConfigError(f"{path} was written by another version; decode the bitstream again")
    try:
        config = method_config(state["method"], state["model"])
        model = method_class(state["method"]).empty(config, state["extent"], state["voxel_size"],
                                                   state["num_primitives"])
        model.load_state_dict(state["state"])
        model.eval()
        test_state = state["test_state"]
        if not isinstance(test_state, dict) or not all(isinstance(v, torch.Tensor) for v in test_state.values()):
            raise TypeError("test_state is not a mapping of tensors")
        model.render_cache.fill(test_state)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ConfigError(f"{path} is damaged ({type(err).__name__}); decode the bitstream again") from None
    info = load_yaml(directory / CONFIG_FILE)
    if info.get("method") != state["method"]:
        raise ConfigError(f"{directory / CONFIG_FILE} names the method {info.get('method')!r} but {path} holds a "
                          f"{state['method']} model; decode the bitstream again")
    return info, model.to(device)


EVALUATION_FILES = ("metrics.json", "per_view.json")


def keep_evaluation(previous: Path, staging: Path, info: dict) -> None:
    """Decoding the same bitstream again gives the same model: its evaluation in ``previous`` stays valid
    and is carried into the new folder (no result is lost by running a command again). A folder decoded
    from another bitstream keeps nothing."""
    try:
        before = load_yaml(previous / CONFIG_FILE) if (previous / CONFIG_FILE).is_file() else None
    except ConfigError:
        return
    same = (isinstance(before, dict) and before.get("source_crc32") == info["source_crc32"]
            and before.get("source_bytes") == info["source_bytes"])
    if not same:
        return
    for name in EVALUATION_FILES:
        if (previous / name).is_file() and not (previous / name).is_symlink():
            shutil.copy2(previous / name, staging / name)


def decode_file(path: Path, out_dir: Path, progress: bool = False, device: str = "cpu") -> dict:
    """Decode the file at ``path`` into the folder ``out_dir``: absent, empty or a decoded model folder, which
    is replaced whole (written beside it, then swapped in; :func:`predictgs.guard.replace_folder`), so no
    file of a previous model (its metrics.json) survives; the evaluation of the same bitstream decoded
    before is kept (:func:`keep_evaluation`). The folder is locked while it is replaced. ``device``: where
    the coding networks run (``auto``: CUDA when available)."""
    check_decoded_output(out_dir, Path(path))  # before Path(): "" would become "."
    path, out_dir = Path(path), Path(out_dir)
    torch_device = resolve_device(device)
    check_output_dir(out_dir, "--output")
    check_output_file(out_dir / MODEL_FILE, "--output")
    with stages(["read", "decode", "save"], progress, "decode") as step:
        step("read")
        data = read_bitstream_file(path)
        check_bitstream(data)  # a damaged file fails here, before the coder is loaded or anything decoded
        warm_up()  # the coder's tables, built outside the timed decoding
        step("decode")
        start = time.perf_counter()
        decoded = decode_model(data, torch_device)
        seconds = time.perf_counter() - start
        step("save")
        info = {"source": str(path), "source_bytes": len(data), "source_crc32": crc32(data),
                "run": decoded.header.get("run", {})}
        if out_dir.is_symlink():  # the folder it points to is replaced, the link kept (as write_atomic does)
            out_dir = out_dir.resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        with folder_lock(out_dir, "decoded model folder"):
            check_decoded_output(out_dir, path)  # again, now that no other writer can change it
            remove_stale_siblings(out_dir)
            staging = temporary_sibling(out_dir)
            try:
                save_decoded(decoded.model, decoded.method, staging, info)
                write_marker(staging, "decoded")
                keep_evaluation(out_dir, staging, info)
                replace_folder(staging, out_dir)
            finally:
                shutil.rmtree(staging, ignore_errors=True)  # gone after a replacement; a failed write's leftovers
    return {"method": decoded.method, "num_primitives": decoded.model.num_primitives,
            "size_bytes": len(data), "section_bytes": decoded.section_bytes, "decode_seconds": seconds,
            "decode_device": device_label(torch_device), "out": str(out_dir)}


def evaluate_decoded(directory: Path, scene_path: Path, *, protocol: dict | None = None, device: str = "auto",
                     lpips: bool = True, rasterizer: str = "auto", fps_seconds: float = FPS_MIN_SECONDS,
                     save_renders: Path | None = None, progress: bool = False) -> dict:
    """Metrics of a decoded model directory on a scene; written to DIR/metrics.json and DIR/per_view.json.
    ``save_renders``: a folder for each test view's render, ground truth and error map (PNG)."""
    from ..render_video import RenderSaver

    directory = Path(directory)
    saver = RenderSaver(save_renders) if save_renders is not None else None
    torch_device = resolve_device(device)
    if directory.is_dir():  # its metrics are written there: fail now rather than after the evaluation
        check_output_dir(directory, "DECODED_DIR")
    backend = resolve_backend(rasterizer, torch_device)
    looks_decoded = (directory / MODEL_FILE).is_file() and (directory / CONFIG_FILE).is_file()
    # Locked only when it looks like a decoded folder (load_decoded explains anything else).
    with FolderLock(directory, "decoded model folder") if looks_decoded else contextlib.nullcontext():
        return _evaluate_decoded(directory, scene_path, protocol, torch_device, backend, lpips, fps_seconds, saver,
                                 save_renders, progress)


def _evaluate_decoded(directory: Path, scene_path: Path, protocol: dict | None, torch_device, backend: str,
                      lpips: bool, fps_seconds: float, saver, save_renders: Path | None, progress: bool) -> dict:
    info, model = load_decoded(directory, torch_device)
    run_info = info.get("run") or {}
    run_protocol = (run_info.get("protocol") or {}) if isinstance(run_info, dict) else None
    if not isinstance(run_protocol, dict):
        raise ConfigError(f"{directory / CONFIG_FILE}: run.protocol must be a mapping; decode the bitstream again")
    try:
        Protocol.from_dict(run_protocol)
    except ConfigError as err:
        raise ConfigError(f"{directory / CONFIG_FILE}: {err}; decode the bitstream again") from None
    merged = {**run_protocol, **(protocol or {})}
    scene = load_scene(Path(scene_path), merged)
    cameras = test_cameras(scene)
    summary, per_view = evaluate_model(model, scene, torch_device, lpips=lpips, backend=backend, on_render=saver,
                                       progress=progress)
    background = torch.as_tensor(scene.background, dtype=torch.float32, device=torch_device)
    speed = measure_fps(model, cameras, background, torch_device, backend, min_seconds=fps_seconds)
    metrics = {
        "kind": DECODED_KIND,
        "method": info.get("method"),
        "scene": str(scene_path),
        "source": info.get("source"),
        "source_bytes": info.get("source_bytes"),  # the bitstream this model was decoded from (the
        "source_crc32": info.get("source_crc32"),  # workflow checks them against the run's scene.pgs)
        "protocol": merged,
        **{key: summary.get(name) for key, name in SUMMARY_KEYS.items()},
        "num_test_views": len(cameras),
        **model.counts(),
        **speed,
        "resolution": [cameras[0].width, cameras[0].height],
        "device": device_label(torch_device),
        "rasterizer": backend,
        "per_view": "per_view.json",
    }
    if saver is not None:
        metrics["renders"] = str(save_renders)
    write_json(directory / "per_view.json", per_view)
    try:  # merged into what the file holds: keys other steps wrote there are kept
        metrics = {**read_metrics(directory), **metrics}
    except ConfigError:  # a damaged file holds nothing to keep
        pass
    write_json(directory / "metrics.json", metrics)
    return metrics
