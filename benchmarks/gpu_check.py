#!/usr/bin/env python
"""One command for a GPU machine: builds gsplat, compares the rasterizers, trains HAC and Predict-GS on a
real scene, encodes, decodes and evaluates each run, and reports the figures the GPU issue asks for.

    make gpu-check GPU_SCENE=../shared/data/scenes/fern            # = the command below
    python benchmarks/gpu_check.py --scene ../shared/data/scenes/fern --out gpu_check

Uses the CUDA torch already installed (2.4 or newer). gsplat and constriction (the codec's coder) are installed
when missing:
from ``--wheels DIR`` (``pip install --no-index --target``) when given, else from PyPI. Jobs run one
after another in this process, never as competing processes on one GPU. Writes ``<out>/gpu_check.json``
and prints a table:

- per run: iterations per second in each phase of the curriculum (plain, noise, entropy), peak GPU
  memory, host synchronisations per steady-state step (``torch.cuda.set_sync_debug_mode``, ours and the
  rasterizer's), PSNR / SSIM (LPIPS when its weights are present) of the decoded model, estimated and
  real file size, encode / decode seconds, FPS of the decoded model (median frame time over 3 s);
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


def log(message: str) -> None:
    print(f"[gpu-check {time.strftime('%H:%M:%S')}] {message}", flush=True)


def ensure_packages(wheels: str | None) -> dict:
    """Import gsplat and constriction, installing them when missing. -> versions."""
    import importlib

    missing = [name for name in ("gsplat", "constriction") if importlib.util.find_spec(name) is None]
    if missing:
        target = Path(os.environ.get("PREDICTGS_SITE", "/tmp/predictgs-site"))
        if wheels:
            files = [str(p) for p in Path(wheels).glob("*.whl")]
            command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--upgrade",
                       "--target", str(target), *files]
        else:
            command = [sys.executable, "-m", "pip", "install", "-q", "--target", str(target),
                       *(f"{m}=={'1.5.3' if m == 'gsplat' else '0.5.0'}" for m in missing)]
        log(f"installing {', '.join(missing)}: {' '.join(command[:8])} ...")
        subprocess.run(command, check=True)
        sys.path.insert(0, str(target))
        importlib.invalidate_caches()
    versions = {}
    for name in ("gsplat", "constriction"):
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


def count_syncs(trainer, steps: int) -> dict:
    """Host synchronisations in ``steps`` steady-state training steps, by where they come from."""
    import torch

    ours, theirs = 0, 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                trainer.iteration += 1
                trainer.step(trainer.iteration)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for warning in caught:
        if "synchroniz" not in str(warning.message).lower():
            continue
        if str(ROOT) in str(warning.filename) and "site-packages" not in str(warning.filename):
            ours += 1
        else:
            theirs += 1
    return {"steps": steps, "ours_per_step": ours / steps, "rasterizer_and_torch_per_step": theirs / steps}


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
    if cuda:
        torch.cuda.reset_peak_memory_stats(trainer.device)
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
    train_seconds = time.perf_counter() - start_total
    syncs = count_syncs(trainer, sync_steps) if cuda and sync_steps else None
    if syncs is not None:  # the extra steps were beyond the run: count them in its length
        trainer.total = trainer.iteration
    metrics = finish(trainer, spec, run_dir)
    trainer.save_checkpoint()
    return {
        "method": method, "lmbda": lmbda, "run_dir": str(run_dir), "phases": phases,
        "train_wall_seconds": train_seconds,
        "peak_gpu_memory_gb": torch.cuda.max_memory_allocated(trainer.device) / 2**30 if cuda else None,
        "syncs": syncs, "prequant_psnr": metrics["psnr"], "anchors": metrics["num_anchors"],
        "estimated_size_bytes": metrics["estimated_size_bytes"], "rasterizer": trainer.backend,
    }


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
              "gpu": torch.cuda.get_device_name() if cuda else "cpu", "scene": str(scene),
              "iterations": args.iterations}
    result["packages"] = ensure_packages(args.wheels)
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
