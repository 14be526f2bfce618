#!/usr/bin/env python
"""Forward+backward time of the rasterizer (pure-PyTorch reference on the CPU; gsplat too on CUDA).

    python benchmarks/bench_render.py                      # 20k Gaussians at 128x128 and 256x256
    python benchmarks/bench_render.py --gaussians 50000 --sizes 160x120 --json out.json

The scene is a random cloud in front of the camera whose Gaussians cover a few pixels each, like a
Scaffold-GS model of the synthetic benchmark. Prints a table and optionally writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch

from predictgs.render import gsplat_available, rasterize


def make_cloud(num: int, device: str, seed: int = 0, dtype=torch.float32):
    """Random Gaussians spread over the view frustum of ``make_camera``."""
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


def make_camera(width: int, height: int, device: str, dtype=torch.float32):
    focal = 0.9 * width
    K = torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=dtype, device=device)
    return dict(viewmat=torch.eye(4, dtype=dtype, device=device), K=K, width=width, height=height)


def time_forward_backward(params, camera, backend: str, repeats: int) -> dict:
    device = params[0].device

    def step():
        out = rasterize(*params, **camera, backend=backend)
        loss = out.image.square().mean()
        loss.backward()
        for p in params:
            p.grad = None
        return out

    out = step()  # warm-up (allocations, gsplat JIT)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "visible": int((out.radii > 0).sum()),
    }


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 128x128, got {text!r}") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaussians", type=int, default=20_000)
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[(128, 128), (256, 256)])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.gaussians <= 0 or args.repeats <= 0:
        parser.error("--gaussians and --repeats must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        backends = ["reference"] + (["gsplat"] if device == "cuda" and gsplat_available() else [])
        params = make_cloud(args.gaussians, device)
        for width, height in args.sizes:
            camera = make_camera(width, height, device)
            for backend in backends:
                figures = time_forward_backward(params, camera, backend, args.repeats)
                row = dict(device=device if device == "cpu" else torch.cuda.get_device_name(),
                           backend=backend, gaussians=args.gaussians, width=width, height=height,
                           threads=torch.get_num_threads(), **figures)
                rows.append(row)
                print(f"{row['device']:>24}  {backend:>9}  {args.gaussians:>7} G  {width}x{height}  "
                      f"fwd+bwd median {row['median_s'] * 1000:8.1f} ms  (min {row['min_s'] * 1000:.1f} ms, "
                      f"{row['visible']} visible)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                       "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
