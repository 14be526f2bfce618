#!/usr/bin/env python
"""Agreement and speed of the pure-PyTorch reference rasterizer against gsplat (needs CUDA).

    python benchmarks/compare_gsplat.py --json gsplat_vs_reference.json

Renders the same random cloud (default 20k Gaussians at 256x256) with both backends on the GPU and
reports the mean absolute image difference, the relative difference of every input's gradient
(||g_ref - g_gsplat|| / ||g_gsplat||), and forward+backward times. Expected differences come from
gsplat's alpha cap (0.999 vs 0.99) and its 3.33-sigma support (vs 3 sigma).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_render import make_camera, make_cloud, time_forward_backward  # noqa: E402

from predictgs.render import gsplat_available, rasterize  # noqa: E402

NAMES = ("means", "quats", "scales", "opacities", "colors")


def gradients(params, camera, backend, target):
    for p in params:
        p.grad = None
    out = rasterize(*params, **camera, backend=backend)
    ((out.image - target) ** 2).mean().backward()
    return out.image.detach(), [p.grad.detach().clone() for p in params]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaussians", type=int, default=20_000)
    parser.add_argument("--size", type=int, nargs=2, default=[256, 256], metavar=("W", "H"))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("compare_gsplat: no CUDA device here; this comparison needs a GPU", file=sys.stderr)
        return 2
    if not gsplat_available():
        print("compare_gsplat: gsplat does not import on this machine", file=sys.stderr)
        return 2

    width, height = args.size
    params = make_cloud(args.gaussians, "cuda")
    camera = make_camera(width, height, "cuda")
    target = torch.rand(3, height, width, device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    image_ref, grads_ref = gradients(params, camera, "reference", target)
    image_gs, grads_gs = gradients(params, camera, "gsplat", target)
    result = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "gaussians": args.gaussians,
        "width": width,
        "height": height,
        "image_mean_abs_diff": float((image_ref - image_gs).abs().mean()),
        "image_max_abs_diff": float((image_ref - image_gs).abs().max()),
        "psnr_between_backends": float(-10 * torch.log10(((image_ref - image_gs) ** 2).mean())),
        "relative_grad_diff": {
            name: float((gr - gg).norm() / gg.norm().clamp_min(1e-20))
            for name, gr, gg in zip(NAMES, grads_ref, grads_gs)
        },
        "grad_cosine": {
            name: float(torch.nn.functional.cosine_similarity(gr.flatten(), gg.flatten(), dim=0))
            for name, gr, gg in zip(NAMES, grads_ref, grads_gs)
        },
        "fwd_bwd_seconds": {
            backend: time_forward_backward(params, camera, backend, args.repeats)["median_s"]
            for backend in ("reference", "gsplat")
        },
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
