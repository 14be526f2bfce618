#!/usr/bin/env python
"""Forward+backward time of the rasterizers: the compiled CPU kernels against the pure-PyTorch reference
(and gsplat on CUDA), in one run on the same machine.

    python benchmarks/bench_render.py                                  # the issue's cases, 1 and 2 threads
    python benchmarks/bench_render.py --cases 50000@160x120 --threads 1 --no-frame --json out.json
    python benchmarks/bench_render.py --save-frame frame.pt            # keep the captured training frame
    python benchmarks/bench_render.py --frame frame.pt                 # time a frame captured before

Cases: random clouds (``N@WxH``: N Gaussians covering a few pixels each, spread over the view) and a
training frame: the neural Gaussians HAC renders at one step of a short training on the embedded
benchmark's outdoor scene (160x120; ``--frame-iterations``), captured as they enter the rasterizer.
Gaussians in training are larger and overlap more than in the random clouds. The backends are timed
alternately (one call of each per repeat), so that both see the same load on a shared machine. Prints a
table with the speed-up over the reference; writes JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from predictgs import kernels
from predictgs.render import gsplat_available, rasterize

TENSORS = ("means", "quats", "scales", "opacities", "colors")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_cloud(num: int, device: str = "cpu", seed: int = 0, dtype=torch.float32) -> list[torch.Tensor]:
    """Random Gaussians spread over the view frustum of ``make_camera`` (means, quats, scales, opacities,
    colours; leaves that require grad). Also used by compare_gsplat.py."""
    gen = torch.Generator().manual_seed(seed)
    depth = 2.0 + 4.0 * torch.rand(num, generator=gen)
    xy = (torch.rand(num, 2, generator=gen) - 0.5) * 1.2 * depth[:, None]
    means = torch.cat([xy, depth[:, None]], dim=1)
    quats = torch.randn(num, 4, generator=gen)
    scales = torch.exp(torch.randn(num, 3, generator=gen) * 0.5 - 4.2)
    opacities = torch.rand(num, generator=gen) * 0.9 + 0.05
    colors = torch.rand(num, 3, generator=gen)
    tensors = [means, quats, scales, opacities, colors]
    return [t.to(device=device, dtype=dtype).requires_grad_(True) for t in tensors]


def make_camera(width: int, height: int, device: str = "cpu", dtype=torch.float32) -> dict:
    focal = 0.9 * width
    K = torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=dtype, device=device)
    return dict(viewmat=torch.eye(4, dtype=dtype, device=device), K=K, width=width, height=height)


def capture_frame(iterations: int) -> dict:
    """Train HAC on the embedded outdoor scene for ``iterations`` steps (compiled kernels) and return the
    Gaussians and camera of the last step's render."""
    from predictgs.data import load_scene
    from predictgs.data.synth import generate_scene
    from predictgs.pipeline.train import build_spec, new_trainer
    from predictgs.train import trainer as trainer_module

    captured: dict = {}
    original = trainer_module.rasterize

    def recording(means, quats, scales, opacities, colors, **kwargs):
        captured.clear()
        captured.update({name: t.detach().clone() for name, t in zip(TENSORS, (means, quats, scales, opacities,
                                                                              colors))})
        captured["camera"] = {k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in kwargs.items()
                              if k in ("viewmat", "K", "width", "height", "background", "sh_degree")}
        return original(means, quats, scales, opacities, colors, **kwargs)

    with tempfile.TemporaryDirectory() as tmp:
        scene_path = Path(tmp) / "outdoor"
        generate_scene("outdoor", 0, scene_path)
        # the milestones scale with the run: at 1.25x the captured step is late in the noise phase
        spec, model_config = build_spec("hac", scene_path, iterations=int(iterations * 1.25), device="cpu")
        trainer = new_trainer(spec, model_config, load_scene(scene_path, spec.protocol), Path(tmp) / "run",
                              progress=False)
        trainer.model.train()
        trainer_module.rasterize = recording
        try:
            for iteration in range(1, iterations + 1):
                trainer.step(iteration)
                trainer.iteration = iteration
        finally:
            trainer_module.rasterize = original
    if not captured:
        raise RuntimeError("the training rendered nothing to capture")
    return captured


def load_frame(path: Path) -> dict:
    frame = torch.load(path, weights_only=True)
    if not isinstance(frame, dict) or any(name not in frame for name in (*TENSORS, "camera")):
        raise ValueError(f"{path} is not a frame saved by --save-frame")
    return frame


def time_cases(params: list[torch.Tensor], camera: dict, backends: list[str], repeats: int, device: str) -> dict:
    """Median and minimum fwd+bwd seconds per backend, the backends called alternately."""
    tensors = [t.detach().to(device).requires_grad_(True) for t in params]
    camera = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in camera.items()}

    def step(backend):
        out = rasterize(*tensors, **camera, backend=backend)
        out.image.square().mean().backward()
        for t in tensors:
            t.grad = None
        return out

    times = {b: [] for b in backends}
    visible = {}
    for backend in backends:  # warm-up (allocations, first builds)
        visible[backend] = int((step(backend).radii > 0).sum())
    for _ in range(repeats):
        for backend in backends:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step(backend)
            if device == "cuda":
                torch.cuda.synchronize()
            times[backend].append(time.perf_counter() - start)
    return {b: {"median_s": statistics.median(t), "min_s": min(t), "visible": visible[b]} for b, t in times.items()}


def time_forward_backward(params: list[torch.Tensor], camera: dict, backend: str, repeats: int) -> dict:
    """One backend's fwd+bwd seconds (median, min) and visible count. Also used by compare_gsplat.py."""
    return time_cases(params, camera, [backend], repeats, params[0].device.type)[backend]


def parse_case(text: str) -> tuple[int, int, int]:
    try:
        count, size = text.lower().split("@")
        width, height = size.split("x")
        case = int(count), int(width), int(height)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a case looks like 20000@128x128, got {text!r}") from None
    if min(case) <= 0:
        raise argparse.ArgumentTypeError(f"a case needs positive numbers, got {text!r}")
    return case


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=parse_case, nargs="*", default=[(20_000, 128, 128), (200_000, 504, 378)],
                        help="random clouds as N@WxH (default: 20000@128x128 200000@504x378)")
    parser.add_argument("--frame", type=Path, help="a training frame saved by --save-frame (default: capture one)")
    parser.add_argument("--no-frame", action="store_true", help="time no training frame")
    parser.add_argument("--frame-iterations", type=int, default=150,
                        help="training steps before the captured frame (default 150)")
    parser.add_argument("--save-frame", type=Path, help="write the captured frame to this file")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU threads (default: 1 2)")
    parser.add_argument("--backends", nargs="+", choices=["reference", "compiled", "gsplat"],
                        help="default: reference and compiled on the CPU, reference and gsplat on CUDA")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.repeats <= 0 or args.frame_iterations <= 0 or any(t <= 0 for t in args.threads):
        parser.error("--repeats, --frame-iterations and --threads must be positive")
    if args.frame is not None and not args.frame.is_file():
        parser.error(f"--frame {args.frame} is not a file")
    backends = args.backends or ["reference", "compiled"]
    if "compiled" in backends and not kernels.available():
        parser.error(f"the compiled kernels cannot be built: {kernels.unavailable_reason()}")

    print(f"CPU: {cpu_model()}; torch {torch.__version__}", flush=True)
    cases = [(f"{n} random @ {w}x{h}", make_cloud(n), make_camera(w, h)) for n, w, h in args.cases]
    if not args.no_frame:
        if args.frame is not None:
            frame = load_frame(args.frame)
        else:
            print(f"capturing a training frame (HAC, embedded outdoor scene, {args.frame_iterations} steps) ...",
                  flush=True)
            frame = capture_frame(args.frame_iterations)
        if args.save_frame is not None:
            torch.save(frame, args.save_frame)
        camera = frame["camera"]
        cases.append((f"training frame: {frame['means'].shape[0]} @ {camera['width']}x{camera['height']}",
                      [frame[name] for name in TENSORS], camera))

    rows = []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        device_backends = [b for b in backends if b != "gsplat"] if device == "cpu" else \
            [b for b in (args.backends or ["reference", "gsplat"]) if b != "compiled"]
        if device == "cuda" and "gsplat" in device_backends and not gsplat_available():
            device_backends.remove("gsplat")
        for threads in (args.threads if device == "cpu" else [torch.get_num_threads()]):
            torch.set_num_threads(threads)
            for name, params, camera in cases:
                figures = time_cases(params, camera, device_backends, args.repeats, device)
                base = figures.get("reference", {}).get("median_s")
                for backend, fig in figures.items():
                    row = dict(device=device if device == "cpu" else torch.cuda.get_device_name(device),
                               case=name, backend=backend, threads=threads, gaussians=int(params[0].shape[0]),
                               width=camera["width"], height=camera["height"], **fig)
                    if base is not None:
                        row["speedup_vs_reference"] = base / fig["median_s"]
                    rows.append(row)
                    speed = f"  {row['speedup_vs_reference']:5.1f}x" if base is not None else ""
                    print(f"{row['device']:>8} {threads} thr  {name:<36} {backend:>9}  fwd+bwd median "
                          f"{fig['median_s'] * 1000:9.1f} ms (min {fig['min_s'] * 1000:.1f}, "
                          f"{fig['visible']} visible){speed}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_model(), "torch": torch.__version__, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
