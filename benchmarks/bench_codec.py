#!/usr/bin/env python
"""Encode and decode time of the HAC codec against the anchor count, on the CPU.

    python benchmarks/bench_codec.py                              # 1k .. 100k anchors, chunk sweep at 30k
    python benchmarks/bench_codec.py --anchors 1000 10000 --chunks 1000 3000 --json out.json

Models are HAC models with random parameters (``predictgs.codec.synthetic.random_hac``: HAC's default
sizes, 50-d features, 10 offsets, 2^13/2^15 hash tables; values drawn from the model's own entropy
model), so no training is needed. Times are wall-clock around ``encode_model`` (model -> bytes) and
``decode_model`` (bytes -> model in decoded mode), after a warm-up that loads torchac. A linear fit
t = a + b N extrapolates to a Mip-NeRF360-sized model (500k anchors), printed beside the published
times (A100 GPU, as reported in the Predict-GS paper).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from predictgs.codec import decode_model, encode_model
from predictgs.codec.arithmetic import torchac
from predictgs.codec.synthetic import random_hac
from predictgs.config import to_dict

PUBLISHED = {  # seconds on Mip-NeRF360, A100 (Predict-GS paper, efficiency table)
    "HAC": (6.96, 18.72),
    "Predict-GS": (6.73, 18.56),
}
MIPNERF360_ANCHORS = 500_000


def time_codec(model, chunk_anchors: int, repeats: int) -> dict:
    config = to_dict(model.config)
    encode_times, decode_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        encoded = encode_model(model, "hac", config, chunk_anchors=chunk_anchors)
        encode_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        decode_model(encoded.data)
        decode_times.append(time.perf_counter() - start)
    return {"encode_seconds": min(encode_times), "decode_seconds": min(decode_times),
            "size_bytes": len(encoded.data), "section_bytes": encoded.section_bytes}


def linear_fit(counts, seconds) -> tuple[float, float]:
    """(a, b) of t = a + b N, least squares."""
    b, a = np.polyfit(np.asarray(counts, dtype=float), np.asarray(seconds, dtype=float), 1)
    return float(a), float(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--anchors", type=int, nargs="+", default=[1000, 3000, 10000, 30000, 100000])
    parser.add_argument("--chunk", type=int, default=3000, help="anchors per context chunk for the sweep over N")
    parser.add_argument("--chunks", type=int, nargs="*", default=[1000, 3000, 10000, 30000],
                        help="chunk sizes compared at --chunk-anchors-model anchors (empty: skip)")
    parser.add_argument("--chunk-sweep-anchors", type=int, default=30000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torchac()  # compile/load the backend outside the timings
    warm = random_hac(500, seed=99)
    time_codec(warm, args.chunk, 1)

    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'anchors':>8} {'encode s':>9} {'decode s':>9} {'size KiB':>9} {'enc us/anchor':>14} {'dec us/anchor':>14}")
    rows = []
    for n in args.anchors:
        model = random_hac(n, seed=n)
        result = {"anchors": model.anchors.num_anchors, "chunk_anchors": args.chunk,
                  **time_codec(model, args.chunk, args.repeats)}
        rows.append(result)
        print(f"{result['anchors']:>8} {result['encode_seconds']:>9.3f} {result['decode_seconds']:>9.3f} "
              f"{result['size_bytes'] / 1024:>9.1f} {1e6 * result['encode_seconds'] / n:>14.1f} "
              f"{1e6 * result['decode_seconds'] / n:>14.1f}")

    chunk_rows = []
    if args.chunks:
        n = args.chunk_sweep_anchors
        model = random_hac(n, seed=n)
        print(f"\nchunk size at {n} anchors:")
        print(f"{'chunk':>8} {'encode s':>9} {'decode s':>9} {'size bytes':>11}")
        for chunk in args.chunks:
            result = {"anchors": n, "chunk_anchors": chunk, **time_codec(model, chunk, args.repeats)}
            chunk_rows.append(result)
            print(f"{chunk:>8} {result['encode_seconds']:>9.3f} {result['decode_seconds']:>9.3f} "
                  f"{result['size_bytes']:>11}")

    extrapolated = {}
    if len(rows) >= 2:
        counts = [r["anchors"] for r in rows]
        enc = linear_fit(counts, [r["encode_seconds"] for r in rows])
        dec = linear_fit(counts, [r["decode_seconds"] for r in rows])
        extrapolated = {"anchors": MIPNERF360_ANCHORS,
                        "encode_seconds": enc[0] + enc[1] * MIPNERF360_ANCHORS,
                        "decode_seconds": dec[0] + dec[1] * MIPNERF360_ANCHORS,
                        "encode_fit": enc, "decode_fit": dec}
        print(f"\nlinear fit: encode {enc[0]:.3f} s + {1e6 * enc[1]:.2f} us/anchor, "
              f"decode {dec[0]:.3f} s + {1e6 * dec[1]:.2f} us/anchor")
        print(f"extrapolated to {MIPNERF360_ANCHORS} anchors (Mip-NeRF360 size), this CPU: "
              f"encode {extrapolated['encode_seconds']:.1f} s, decode {extrapolated['decode_seconds']:.1f} s")
        for name, (e, d) in PUBLISHED.items():
            print(f"  published {name} (A100 GPU, Mip-NeRF360): encode {e:.2f} s, decode {d:.2f} s "
                  f"-> ours/published: encode x{extrapolated['encode_seconds'] / e:.2f}, "
                  f"decode x{extrapolated['decode_seconds'] / d:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": "cpu", "processor": platform.processor() or platform.machine(),
                       "threads": torch.get_num_threads(), "torch": torch.__version__, "sweep": rows,
                       "chunks": chunk_rows, "extrapolated": extrapolated, "published": PUBLISHED}, f, indent=2)


if __name__ == "__main__":
    main()
