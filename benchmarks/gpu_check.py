#!/usr/bin/env python
"""One command for a GPU machine: builds gsplat, compares the rasterizers, trains HAC and Predict-GS on a
real scene, encodes, decodes and evaluates each run, and reports the figures the GPU issue asks for.

    make gpu-check GPU_SCENE=../shared/data/scenes/fern            # = the command below
    python benchmarks/gpu_check.py --scene ../shared/data/scenes/fern --out gpu_check

Uses the CUDA torch already installed (2.4 or newer). gsplat (and constriction, gsplat's requirements and
the ninja program) are installed when missing, with ``pip install --no-deps --target $PREDICTGS_SITE``
(never a second torch): from ``--wheels DIR`` (offline) when given, else pinned versions from PyPI. Jobs
run one after another in this process, never as competing processes on one GPU. The Triton hash-grid
kernels are compiled before anything is timed. Writes ``<out>/gpu_check.json`` and prints a table:

- per run: iterations per second in each phase of the curriculum (plain, noise, entropy), peak GPU
  memory, host synchronisations per steady-state step (``torch.cuda.set_sync_debug_mode``, ours and the
  rasterizer's, by the innermost project or gsplat frame on the stack), PSNR / SSIM (LPIPS when its
  weights are present) of the decoded model, estimated and real file size, encode / decode seconds, FPS
  of the decoded model (median frame time over 3 s);
- the rasterizer comparison (benchmarks/compare_gsplat.py), the backends in use, GPU, torch version;
- the targets: HAC >= 45 it/s in the entropy phase, Predict-GS <= 1.1x HAC's time per iteration,
  decoded Predict-GS FPS >= 0.95x decoded HAC FPS.

``--device cpu`` runs the same steps with the reference rasterizer (a smoke test of the script, used by
tests/test_gpu_check.py; the figures mean nothing there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

RUNS = (("hac", 0.001), ("hac", 0.004), ("predictgs", 0.001), ("predictgs", 0.004))
TARGETS = {"hac_entropy_its": 45.0, "predictgs_time_ratio": 1.1, "fps_ratio": 0.95}
WARM_UP_POINTS = 300  # any count: the kernels are not specialised on it


def log(message: str) -> None:
    print(f"[gpu-check {time.strftime('%H:%M:%S')}] {message}", flush=True)


# Installed into PREDICTGS_SITE (default /tmp/predictgs-site) when missing, by import name. Always with
# --no-deps: pip would otherwise resolve gsplat's "torch" requirement by installing a second (CPU or other
# CUDA) torch of several GB first on sys.path. gsplat's own requirements are therefore listed: numpy and
# torch are the environment's; jaxtyping and rich (and theirs) are pinned to versions known to work.
PACKAGES = {"gsplat": "gsplat==1.5.3", "constriction": "constriction==0.5.0"}
GSPLAT_DEPS = {"jaxtyping": "jaxtyping==0.3.11", "wadler_lindig": "wadler-lindig==0.1.8",
               "rich": "rich==15.0.0", "markdown_it": "markdown-it-py==4.3.0", "mdurl": "mdurl==0.1.2",
               "pygments": "pygments==2.21.0"}
# torch builds gsplat's extension with the ninja *program*: the wheel installs it as <target>/bin/ninja.
NINJA = "ninja==1.13.2"


def site_target() -> Path:
    return Path(os.environ.get("PREDICTGS_SITE", "/tmp/predictgs-site"))


def use_site(target: Path) -> None:
    """Put an install target first on sys.path and its bin/ (the ninja program) first on PATH."""
    import importlib

    if str(target) not in sys.path:
        sys.path.insert(0, str(target))
    bin_dir = target / "bin"
    path = os.environ.get("PATH", "")
    if bin_dir.is_dir() and str(bin_dir) not in path.split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([str(bin_dir), *filter(None, [path])])
    importlib.invalidate_caches()


def missing_requirements(build: bool) -> list[str]:
    """The pinned requirements of what does not import here, and ninja when gsplat is to be built
    (``build``: on CUDA) and no ninja program is on PATH."""
    import importlib.util
    import shutil

    missing = [req for name, req in PACKAGES.items() if importlib.util.find_spec(name) is None]
    if any(req.startswith("gsplat") for req in missing):
        missing += [req for name, req in GSPLAT_DEPS.items() if importlib.util.find_spec(name) is None]
    if build and shutil.which("ninja") is None:
        missing.append(NINJA)
    return missing


def install_command(requirements: list[str], wheels: str | None, target: Path) -> list[str]:
    """pip into ``target``, never resolving dependencies (see PACKAGES): from the wheels in ``wheels``
    (every one of them, offline), else the pinned ``requirements`` from the package index."""
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--upgrade", "--target", str(target)]
    if wheels:
        return [*pip, "--no-index", *sorted(str(p) for p in Path(wheels).glob("*.whl"))]
    return [*pip, *requirements]


def install_missing(wheels: str | None, build: bool) -> list[str]:
    """Install what :func:`missing_requirements` lists into :func:`site_target`. -> what was missing."""
    target = site_target()
    if target.is_dir():  # installed by an earlier run
        use_site(target)
    missing = missing_requirements(build)
    if missing:
        command = install_command(missing, wheels, target)
        log(f"installing {', '.join(missing)}: {' '.join(command[:9])} ...")
        subprocess.run(command, check=True)
        use_site(target)
    return missing


def ensure_packages(wheels: str | None, build: bool = True) -> dict:
    """Import gsplat and constriction, installing them when missing. -> versions."""
    import importlib

    install_missing(wheels, build)
    versions = {}
    for name in PACKAGES:
        module = importlib.import_module(name)
        versions[name] = getattr(module, "__version__", "?")
    return versions


def build_gsplat() -> dict:
    from predictgs.render import gsplat_import_error

    start = time.perf_counter()
    cause = gsplat_import_error()
    seconds = time.perf_counter() - start
    if cause is not None:
        raise SystemExit(f"gpu-check: gsplat cannot be used: {cause}")
    return {"gsplat_build_or_load_seconds": seconds}


def compare_rasterizers(out: Path) -> dict:
    import compare_gsplat

    path = out / "gsplat_vs_reference.json"
    code = compare_gsplat.main(["--json", str(path)])
    return json.loads(path.read_text()) if code == 0 and path.is_file() else {"error": f"exit code {code}"}


def _frame_origin(filename: str) -> str | None:
    """"ours" for the project's code (this script excepted), "rasterizer" for gsplat's, else None."""
    path = Path(filename)
    if not path.is_absolute():  # <string>, <frozen ...>
        return None
    if "gsplat" in path.parts:
        return "rasterizer"
    if any(part in ("site-packages", "dist-packages", ".venv") for part in path.parts):
        return None
    path = path.resolve()
    if path != Path(__file__).resolve() and path.is_relative_to(ROOT):
        return "ours"
    return None


def sync_origin(frame) -> str:
    """Who a synchronisation warning raised with Python frame ``frame`` innermost belongs to: the innermost
    frame that is the project's or gsplat's decides. So a sync inside torch's Python wrappers
    (``torch.unique``, ``torch.optim``) or replayed by the autograd engine at the end of our
    ``loss.backward()`` is ours, a sync under gsplat's Python code the rasterizer's; "other" when neither
    is on the stack (a warning replayed on an autograd worker thread)."""
    while frame is not None:
        origin = _frame_origin(frame.f_code.co_filename)
        if origin is not None:
            return origin
        frame = frame.f_back
    return "other"


def count_syncs(trainer, steps: int) -> dict:
    """Host synchronisations in ``steps`` steady-state training steps, by where they come from
    (:func:`sync_origin`, decided from the whole Python stack when the warning is raised)."""
    import torch

    counts = {"ours": 0, "rasterizer": 0, "other": 0}

    def show(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message).lower():
            counts[sync_origin(sys._getframe(1))] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show  # called in the raising thread, with its stack (restored on exit)
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                trainer.iteration += 1
                trainer.step(trainer.iteration)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return {"steps": steps, "ours_per_step": counts["ours"] / steps,
            "rasterizer_per_step": counts["rasterizer"] / steps, "other_per_step": counts["other"] / steps}


def warm_up_kernels(model, device) -> dict:
    """Compile, before anything is timed, every Triton kernel variant that a training step launches: each
    hash-grid encoding of ``model`` looks up a few points, forward and backward (the gradient is returned,
    not accumulated; no random state is used). The kernels are compiled per (kernel, dims, dtype), not per
    point count (hashgrid_triton.UNSPECIALISED), so this covers every later step. Off CUDA the encodings
    take the reference path and nothing is compiled."""
    import torch

    from predictgs.nn.hashgrid import BinaryHashGrid, GridPlaneEncoding

    encodings = [m for m in model.modules() if isinstance(m, GridPlaneEncoding)]
    inside = {id(t) for e in encodings for t in e.tables()}
    encodings += [m for m in model.modules() if isinstance(m, BinaryHashGrid) and id(m) not in inside]
    start = time.perf_counter()
    for encoding in encodings:
        params = [p for p in encoding.parameters() if p.requires_grad]
        dims = 3 if isinstance(encoding, GridPlaneEncoding) else encoding.dims
        dtype = params[0].dtype if params else torch.float32
        x = (torch.arange(WARM_UP_POINTS * dims, device=device, dtype=dtype).reshape(-1, dims) * 0.6180339887) % 1
        with torch.enable_grad():
            out = encoding(x)
            if params:
                torch.autograd.grad(out, params, torch.ones_like(out))
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return {"encodings": len(encodings), "seconds": time.perf_counter() - start}


def train_run(method: str, lmbda: float, scene: Path, out: Path, iterations: int, device: str,
              rasterizer: str, voxel: float, sync_steps: int) -> dict:
    import torch
    import yaml

    from predictgs.data import load_scene
    from predictgs.pipeline.train import build_spec, finish, new_trainer
    from predictgs.runs import save_spec

    run_dir = out / "runs" / f"{method}_{lmbda:g}"
    run_dir.mkdir(parents=True, exist_ok=True)
    config = out / "runs" / f"{method}.yaml"
    model = {"voxel_size": voxel} if voxel > 0 else {}
    config.write_text(yaml.safe_dump({"train": {"lpips": False, "checkpoints": 1}, "model": model}))
    spec, model_config = build_spec(method, scene, lmbda=lmbda, iterations=iterations, config_file=config,
                                    device=device, rasterizer=rasterizer, benchmark="gpu_check",
                                    protocol={"resolution": "factor", "downscale": 1.0, "llffhold": 8})
    scene_data = load_scene(scene, spec.protocol)
    save_spec(spec, run_dir)
    trainer = new_trainer(spec, model_config, scene_data, run_dir, progress=False)
    cuda = trainer.device.type == "cuda"
    warm_up = warm_up_kernels(trainer.model, trainer.device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(trainer.device)
    phases, train_seconds = timed_phases(trainer, iterations)
    syncs = count_syncs(trainer, sync_steps) if cuda and sync_steps else None
    if syncs is not None:  # the extra steps were beyond the run: count them in its length
        trainer.total = trainer.iteration
    metrics = finish(trainer, spec, run_dir)
    trainer.save_checkpoint()
    return {
        "method": method, "lmbda": lmbda, "run_dir": str(run_dir), "phases": phases,
        "train_wall_seconds": train_seconds, "kernel_warm_up": warm_up,
        "peak_gpu_memory_gb": torch.cuda.max_memory_allocated(trainer.device) / 2**30 if cuda else None,
        "syncs": syncs, "prequant_psnr": metrics["psnr"], "anchors": metrics["num_anchors"],
        "estimated_size_bytes": metrics["estimated_size_bytes"], "rasterizer": trainer.backend,
    }


def timed_phases(trainer, iterations: int) -> tuple[list[dict], float]:
    """Train to ``iterations``, timing each phase of the curriculum. -> phases, total seconds."""
    import torch

    cuda = trainer.device.type == "cuda"
    curriculum = trainer.curriculum
    bounds = sorted({b for b in (curriculum.noise_from, curriculum.entropy_from) if b and 0 < b < iterations})
    phases, last, start_total = [], 0, time.perf_counter()
    trainer.model.train()
    for stop in [*bounds, iterations]:
        if cuda:
            torch.cuda.synchronize(trainer.device)
        start = time.perf_counter()
        trainer.train(stop_after=stop)
        if cuda:
            torch.cuda.synchronize(trainer.device)
        seconds = time.perf_counter() - start
        phases.append({"phase": curriculum.quantisation(stop), "iterations": stop - last, "seconds": seconds,
                       "its_per_second": (stop - last) / seconds if seconds > 0 else None,
                       "primitives_at_end": trainer.model.num_primitives})
        last = stop
    return phases, time.perf_counter() - start_total


def lpips_available() -> bool:
    from predictgs.metrics import lpips_weights_source

    try:
        lpips_weights_source("vgg")
        return True
    except Exception:  # weights (or the lpips package) not present: PSNR and SSIM only
        return False


def codec_run(run: dict, scene: Path, device: str, rasterizer: str, fps_seconds: float, lpips: bool) -> dict:
    from predictgs.pipeline.codec import decode_file, encode_run, evaluate_decoded

    run_dir = Path(run["run_dir"])
    encoded = encode_run(run_dir, run_dir / "scene.pgs", evaluate=False)
    decoded = decode_file(run_dir / "scene.pgs", run_dir / "decoded")
    evaluated = evaluate_decoded(run_dir / "decoded", scene, device=device, lpips=lpips, rasterizer=rasterizer,
                                 fps_seconds=fps_seconds)
    return {
        "size_bytes": encoded["size_bytes"], "encode_seconds": encoded["encode_seconds"],
        "decode_seconds": decoded["decode_seconds"], "psnr": evaluated["psnr"], "ssim": evaluated["ssim"],
        "lpips": evaluated.get("lpips"), "fps": evaluated["fps"], "fps_frames": evaluated["fps_frames"],
        "decoded_anchors": evaluated["num_anchors"], "resolution": evaluated["resolution"],
    }


def entropy_its(run: dict) -> float | None:
    values = [p["its_per_second"] for p in run["phases"] if p["phase"] == "entropy" and p["its_per_second"]]
    return values[-1] if values else None


def summarise(runs: list[dict]) -> dict:
    by = {(r["method"], r["lmbda"]): r for r in runs}
    out = {}
    for lmbda in sorted({r["lmbda"] for r in runs}):
        hac, ours = by.get(("hac", lmbda)), by.get(("predictgs", lmbda))
        if not hac or not ours:
            continue
        hac_its, our_its = entropy_its(hac), entropy_its(ours)
        out[f"lambda_{lmbda:g}"] = {
            "hac_entropy_its": hac_its,
            "hac_entropy_its_target_met": hac_its is not None and hac_its >= TARGETS["hac_entropy_its"],
            "predictgs_time_ratio": (hac_its / our_its) if hac_its and our_its else None,
            "fps_ratio": ours["fps"] / hac["fps"] if hac.get("fps") else None,
        }
        entry = out[f"lambda_{lmbda:g}"]
        entry["predictgs_time_ratio_target_met"] = (entry["predictgs_time_ratio"] is not None
                                                    and entry["predictgs_time_ratio"] <= TARGETS["predictgs_time_ratio"])
        entry["fps_ratio_target_met"] = entry["fps_ratio"] is not None and entry["fps_ratio"] >= TARGETS["fps_ratio"]
    return out


def print_table(result: dict) -> None:
    header = f"{'run':<18}{'plain it/s':>11}{'noise it/s':>11}{'entropy it/s':>13}{'peak GB':>9}{'syncs/step':>11}" \
             f"{'PSNR':>8}{'est. B':>10}{'file B':>10}{'enc s':>7}{'dec s':>7}{'FPS':>8}"
    print(header)
    for run in result["runs"]:
        its = {p["phase"]: p["its_per_second"] for p in run["phases"]}

        def fmt(value, spec):
            return format(value, spec) if isinstance(value, (int, float)) else "-"

        syncs = run["syncs"]["ours_per_step"] if run.get("syncs") else None
        print(f"{run['method'] + ' ' + format(run['lmbda'], 'g'):<18}{fmt(its.get('none'), '11.1f')}"
              f"{fmt(its.get('noise'), '11.1f')}{fmt(its.get('entropy'), '13.1f')}"
              f"{fmt(run['peak_gpu_memory_gb'], '9.2f')}{fmt(syncs, '11.1f')}{fmt(run.get('psnr'), '8.2f')}"
              f"{fmt(run['estimated_size_bytes'], '10.0f')}{fmt(run.get('size_bytes'), '10.0f')}"
              f"{fmt(run.get('encode_seconds'), '7.2f')}{fmt(run.get('decode_seconds'), '7.2f')}"
              f"{fmt(run.get('fps'), '8.1f')}")
    for key, entry in result["targets"].items():
        print(key, json.dumps(entry))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scene", required=True, help="a real scene, e.g. ../shared/data/scenes/fern")
    parser.add_argument("--out", default="gpu_check", help="output folder (gpu_check.json, runs/)")
    parser.add_argument("--iterations", type=int, default=2000, help="iterations per run (default 2000)")
    parser.add_argument("--voxel-size", type=float, default=0.05,
                        help="anchor voxel size (default 0.05, fern's; 0: automatic)")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a smoke test")
    parser.add_argument("--wheels", help="folder of wheels to install gsplat/constriction from when missing")
    parser.add_argument("--sync-steps", type=int, default=20,
                        help="steady-state steps counted with the CUDA sync debug mode (default 20)")
    parser.add_argument("--fps-seconds", type=float, default=3.0)
    parser.add_argument("--no-lpips", action="store_true", help="PSNR and SSIM only")
    parser.add_argument("--runs", nargs="+", default=[f"{m}:{l:g}" for m, l in RUNS],
                        help="method:lambda pairs (default: hac and predictgs at 0.001 and 0.004)")
    args = parser.parse_args(argv)
    scene, out = Path(args.scene), Path(args.out)
    if not scene.is_dir():
        print(f"gpu-check: error: scene folder {scene} not found", file=sys.stderr)
        return 2
    if args.iterations <= 0:
        print("gpu-check: error: --iterations must be positive", file=sys.stderr)
        return 2
    try:
        pairs = [(m, float(l)) for m, l in (r.split(":") for r in args.runs)]
    except ValueError:
        print(f"gpu-check: error: --runs takes method:lambda pairs, got {args.runs}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    import torch

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("gpu-check: error: no CUDA device here (use --device cpu for a smoke test)", file=sys.stderr)
        return 2
    result = {"torch": torch.__version__, "python": platform.python_version(),
              "gpu": torch.cuda.get_device_name(args.device) if cuda else "cpu", "scene": str(scene),
              "iterations": args.iterations}
    result["packages"] = ensure_packages(args.wheels, build=cuda)
    rasterizer = "auto" if cuda else "reference"
    if cuda:
        log("building / loading gsplat")
        result.update(build_gsplat())
        log("comparing the rasterizers")
        result["rasterizer_comparison"] = compare_rasterizers(out)
    from predictgs.nn import hashgrid

    lpips = not args.no_lpips and lpips_available()
    result["lpips"] = lpips
    selected = hashgrid.selected_backend()
    result["hashgrid_backend"] = ("triton" if selected != "reference" and hashgrid.fused_available(args.device)
                                  else "reference")
    result["hashgrid_fused_unavailable"] = hashgrid.fused_unavailable_reason(args.device)
    runs = []
    for method, lmbda in pairs:
        log(f"training {method} lambda {lmbda:g} ({args.iterations} iterations)")
        run = train_run(method, lmbda, scene, out, args.iterations, args.device, rasterizer, args.voxel_size,
                        args.sync_steps)
        log(f"encoding, decoding and evaluating {method} lambda {lmbda:g}")
        run.update(codec_run(run, scene, args.device, rasterizer, args.fps_seconds, lpips))
        runs.append(run)
        (out / "gpu_check.json").write_text(json.dumps({**result, "runs": runs}, indent=2))
    result["runs"] = runs
    result["targets"] = summarise(runs)
    result["wall_seconds"] = time.perf_counter() - start
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    print_table(result)
    log(f"done in {result['wall_seconds']:.0f} s; figures in {out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
