#!/usr/bin/env python
"""Forward+backward time of the binarised hash-grid encoding (HAC's context / Predict-GS's SFP).

    python benchmarks/bench_hashgrid.py                         # 20k and 70k anchors, HAC config
    python benchmarks/bench_hashgrid.py --anchors 20000 --repeats 5 --json out.json
    python benchmarks/bench_hashgrid.py --device cuda            # reference vs fused Triton kernels

Config: ``GridPlaneEncoding()`` defaults = HAC's (12 grid levels at 2^13, 3 planes of 4 levels at 2^15,
4 features per level, 96 outputs). One timed step = binarise the tables + encode N random anchors in
[0,1]^3 + backward of a random linear loss into the tables' raw parameters. The PyTorch reference is
timed on every device; the fused Triton path only on CUDA (on the CPU it is reported as unavailable).
As in training (``predictgs.train.loop.Trainer``), deterministic algorithms are switched on when the
device is the CPU (``--no-deterministic`` turns that off). Prints a table and optionally writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch

from predictgs.nn import hashgrid


def time_step(encoding, x: torch.Tensor, grad_out: torch.Tensor, backend: str, repeats: int) -> dict:
    device = x.device

    def step():
        with hashgrid.backend_override(backend):
            out = encoding(x)
        out.backward(grad_out)
        for p in encoding.parameters():
            p.grad = None

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up (allocations, Triton JIT)
    fwd, total = [], []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        with torch.no_grad(), hashgrid.backend_override(backend):
            encoding(x)
        sync()
        fwd.append(time.perf_counter() - start)
        sync()
        start = time.perf_counter()
        step()
        sync()
        total.append(time.perf_counter() - start)
    result = {"fwd_median_s": statistics.median(fwd), "fwd_bwd_median_s": statistics.median(total),
              "fwd_bwd_min_s": min(total)}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        step()
        result["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def main(argv=None) -> int:
    head, _, tail = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(description=head, epilog=tail,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--anchors", type=int, nargs="+", default=[20000, 70000], help="anchor counts N")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per figure (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on the CPU")
    parser.add_argument("--no-deterministic", action="store_true",
                        help="leave torch's deterministic algorithms off on the CPU")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cpu" and not args.no_deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    fused = hashgrid.fused_available(device)
    backends = ["reference"] + (["triton"] if fused else [])

    gen = torch.Generator().manual_seed(0)
    encoding = hashgrid.GridPlaneEncoding()
    with torch.no_grad():
        for table in encoding.tables():
            table.params.uniform_(-1, 1, generator=gen)
    encoding = encoding.to(device)
    rows = []
    for n in args.anchors:
        x = torch.rand(n, 3, generator=gen).to(device)
        grad_out = torch.randn(n, encoding.output_dim, generator=gen).to(device)
        for backend in backends:
            rows.append({"anchors": n, "backend": backend, **time_step(encoding, x, grad_out, backend, args.repeats)})

    print(f"hash-grid encoding (HAC config: {encoding.output_dim} outputs, {encoding.num_binary_params():,} "
          f"binary parameters) on {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    if not fused:
        print(f"fused Triton path: not available here ({hashgrid.fused_unavailable_reason(device)}); "
              "it needs CUDA and triton")
    print(f"{'anchors':>8}  {'backend':>9}  {'fwd (s)':>9}  {'fwd+bwd (s)':>11}  {'min (s)':>9}")
    for r in rows:
        print(f"{r['anchors']:>8}  {r['backend']:>9}  {r['fwd_median_s']:9.4f}  {r['fwd_bwd_median_s']:11.4f}  "
              f"{r['fwd_bwd_min_s']:9.4f}" + (f"  peak {r['peak_memory_mb']:.0f} MiB" if "peak_memory_mb" in r else ""))
    if args.json:
        meta = {"device": str(device), "torch": torch.__version__, "python": sys.version.split()[0],
                "machine": platform.machine(), "threads": torch.get_num_threads(), "repeats": args.repeats,
                "fused_available": fused}
        if device.type == "cuda":
            meta["gpu"] = torch.cuda.get_device_name(device)
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"meta": meta, "results": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
