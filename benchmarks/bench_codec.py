#!/usr/bin/env python
"""Encode and decode time of the HAC codec, on the CPU (one thread by default): trained models of run
directories, and random models against the anchor count.

    python benchmarks/bench_codec.py                              # 1k .. 100k anchors, chunk sweep at 30k
    python benchmarks/bench_codec.py --anchors 1000 10000 --chunks 1000 3000 --json out.json
    python benchmarks/bench_codec.py --anchors 30000 --chunks --outliers 0.001 --outlier-steps 300
    python benchmarks/bench_codec.py --run-dir runs/fern_hac --repeats 3
    python benchmarks/bench_codec.py --baseline ../main --run-dir runs/fern_hac runs/fern_hacpp \
        --methods hac hacpp predictgs --anchors 20000 --json before_after.json

``--baseline DIR`` (a checkout of another version of this repository, e.g. the previous format's) times
the same models with that code and with this one, one after the other in fresh processes, ``--rounds``
times interleaved, and prints both side by side (file size, encode and decode CPU time per anchor):
the before/after table of docs/bitstream.md; it also times the Gaussian streams alone (the same
symbols and distributions through ``encode_gaussian`` / ``decode_gaussian``: the coder). Random models (``--methods``, ``--anchors``) are the
same in both versions (same generator and seed).

Random models are HAC models with random parameters (``predictgs.codec.synthetic.random_hac``: HAC's
default sizes, 50-d features, 10 offsets, 2^13/2^15 hash tables; values drawn from the model's own
entropy model), so no training is needed; ``--outliers`` moves that share of the values by
``--outlier-steps`` quantisation steps, as a trained model's badly predicted values. ``--run-dir`` times
the trained model of a run directory (its checkpoint) instead.

Times are around ``encode_model`` (model -> bytes) and ``decode_model`` (bytes -> model in decoded
mode), after a warm-up that builds the coder's tables; the best of ``--repeats``,
wall-clock and process CPU time (on a busy machine the CPU time is the steadier figure). ``context``
is the float64 context model alone (the per-chunk distributions, which encoder and decoder both
evaluate), a part of both times. A linear fit t = a + b N extrapolates the sweep to a Mip-NeRF360-sized
model (500k anchors), printed beside the published times (A100 GPU, as reported in the Predict-GS
paper).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from predictgs.codec.arithmetic import warm_up
from predictgs.entropy.anchor import DEFAULT_CHUNK_ANCHORS
from predictgs.methods.synthetic import random_hac
from predictgs.pipeline.codec import decode_model, encode_model
from predictgs.config import to_dict

PUBLISHED = {  # seconds on Mip-NeRF360, A100 (Predict-GS paper, efficiency table)
    "HAC": (6.96, 18.72),
    "Predict-GS": (6.73, 18.56),
}
MIPNERF360_ANCHORS = 500_000


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _best(times: list[tuple[float, float]]) -> dict:
    return {"seconds": min(t[0] for t in times), "cpu_seconds": min(t[1] for t in times)}


def codec_calls(model, method: str, model_config: dict, chunk_anchors: int):
    """The codec's API in one place: (encode, decode, context) callables for a model. ``context``
    evaluates the float64 coding network on the coded anchors, chunk by chunk, as both sides do."""
    entropy = model.entropy_model()
    entropy.chunk_anchors = chunk_anchors

    def encode():
        return encode_model(model, chunk_anchors=chunk_anchors)

    def decode(data: bytes):
        return decode_model(data)

    def context():
        coded = model.coded_anchors()
        for _ in entropy._coding_chunks(model.bounds.normalise(coded.positions)):
            pass

    return encode, decode, context


def coded_anchors(model) -> int:
    return int(model.kept_anchors().numel())


def time_codec(model, chunk_anchors: int, repeats: int, method: str = "hac", model_config: dict | None = None,
               with_context: bool = False) -> dict:
    encode, decode, context = codec_calls(model, method, model_config or to_dict(model.config), chunk_anchors)
    encode_times, decode_times, context_times = [], [], []
    for _ in range(repeats):
        start = _clocks()
        encoded = encode()
        encode_times.append(tuple(b - a for a, b in zip(start, _clocks())))
        start = _clocks()
        decode(encoded.data)
        decode_times.append(tuple(b - a for a, b in zip(start, _clocks())))
        if with_context:
            start = _clocks()
            context()
            context_times.append(tuple(b - a for a, b in zip(start, _clocks())))
    enc, dec = _best(encode_times), _best(decode_times)
    result = {"encode_seconds": enc["seconds"], "decode_seconds": dec["seconds"],
              "encode_cpu_seconds": enc["cpu_seconds"], "decode_cpu_seconds": dec["cpu_seconds"],
              "size_bytes": len(encoded.data), "section_bytes": encoded.section_bytes}
    if with_context:
        ctx = _best(context_times)
        result.update(context_seconds=ctx["seconds"], context_cpu_seconds=ctx["cpu_seconds"])
    return result


def time_run(run_dir: str, chunk_anchors: int, repeats: int) -> dict:
    """Time the trained model of a run directory."""
    from predictgs.pipeline.train import load_run

    spec, model = load_run(run_dir, "cpu")
    result = time_codec(model, chunk_anchors, repeats, spec["method"], spec["model"], with_context=True)
    return {"run_dir": str(run_dir), "method": spec["method"], "anchors": coded_anchors(model),
            "chunk_anchors": chunk_anchors, **result}


def print_per_anchor(rows: list[dict]) -> None:
    print(f"{'anchors':>8} {'size B':>10} {'enc us/a':>9} {'dec us/a':>9} {'enc cpu':>8} {'dec cpu':>8} "
          f"{'ctx cpu':>8}  (us per anchor; cpu: process CPU time)")
    for r in rows:
        n = r["anchors"]
        ctx = f"{1e6 * r['context_cpu_seconds'] / n:>8.1f}" if "context_cpu_seconds" in r else f"{'-':>8}"
        print(f"{n:>8} {r['size_bytes']:>10} {1e6 * r['encode_seconds'] / n:>9.1f} "
              f"{1e6 * r['decode_seconds'] / n:>9.1f} {1e6 * r['encode_cpu_seconds'] / n:>8.1f} "
              f"{1e6 * r['decode_cpu_seconds'] / n:>8.1f} {ctx}  {r.get('run_dir', '')}")


def linear_fit(counts, seconds) -> tuple[float, float]:
    """(a, b) of t = a + b N, least squares."""
    b, a = np.polyfit(np.asarray(counts, dtype=float), np.asarray(seconds, dtype=float), 1)
    return float(a), float(b)


# Runs in a fresh process with PYTHONPATH set to one version's tree; uses only the API both versions share.
WORKER = r"""
import json, sys, time
import torch
torch.set_num_threads(1)
case = json.loads(sys.argv[1])
try:
    from predictgs.codec.arithmetic import warm_up
except ImportError:  # versions with torchac
    from predictgs.codec.arithmetic import torchac as warm_up
from predictgs.pipeline.codec import decode_model, encode_model
warm_up()
if case.get("run_dir"):
    from predictgs.pipeline.train import load_run
    spec, model = load_run(case["run_dir"], "cpu")
    method = spec["method"]
else:
    from predictgs.methods import method_class
    from predictgs.methods.synthetic import random_hac
    cls = method_class(case["method"])
    model = random_hac(case["anchors"], seed=case["seed"], config=cls.config_class(), method_class=cls,
                       outliers=case["outliers"], outlier_steps=case["outlier_steps"])
    method = case["method"]
encode_model(model)
best = {"encode": [1e9, 1e9], "decode": [1e9, 1e9]}
for _ in range(case["repeats"]):
    w, c = time.perf_counter(), time.process_time()
    encoded = encode_model(model)
    best["encode"] = [min(best["encode"][0], time.perf_counter() - w), min(best["encode"][1], time.process_time() - c)]
    w, c = time.perf_counter(), time.process_time()
    decode_model(encoded.data)
    best["decode"] = [min(best["decode"][0], time.perf_counter() - w), min(best["decode"][1], time.process_time() - c)]
# The Gaussian streams alone (the coder): the same symbols and distributions, encoded then decoded.
from predictgs.codec.arithmetic import decode_gaussian, encode_gaussian
from predictgs.codec.container import ByteReader, ByteWriter
ctx = model.context
coded = model.coded_anchors()
positions = model.bounds.normalise(coded.positions)
masks = model.element_masks(coded.masks)
calls = []
with torch.no_grad():
    for rows, dists in ctx._coding_chunks(positions):
        for g in ctx.gaussian_groups:
            values = coded.values[g][rows].cpu().float()
            symbols = ctx._symbols(values, dists[g], torch.as_tensor(coded.centres[g]).cpu().float(), values.shape)
            flat, dist = ctx._coded_elements(symbols, dists[g], masks[g][rows].cpu() if g in masks else None)
            calls.append((flat.to(torch.int64), dist))
coder = [1e9, 1e9]
for _ in range(case["repeats"]):
    c = time.process_time()
    streams = []
    for flat, dist in calls:
        out = ByteWriter()
        encode_gaussian(out, flat, dist.mean, dist.scale, dist.step)
        streams.append(out.getvalue())
    coder[0] = min(coder[0], time.process_time() - c)
    c = time.process_time()
    for data, (flat, dist) in zip(streams, calls):
        decode_gaussian(ByteReader(data, "x"), dist.mean, dist.scale, dist.step)
    coder[1] = min(coder[1], time.process_time() - c)
print(json.dumps({"method": method, "anchors": int(model.kept_anchors().numel()), "size_bytes": len(encoded.data),
                  "coder_encode_cpu_seconds": coder[0], "coder_decode_cpu_seconds": coder[1],
                  "gaussian_stream_bytes": sum(len(d) for d in streams),
                  "section_bytes": encoded.section_bytes, "encode_seconds": best["encode"][0],
                  "encode_cpu_seconds": best["encode"][1], "decode_seconds": best["decode"][0],
                  "decode_cpu_seconds": best["decode"][1]}))
"""


def run_worker(tree: str, case: dict) -> dict:
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", WORKER, json.dumps(case)], env=env, capture_output=True, cwd=tree,
                            text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"the worker failed in {tree}:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare(baseline: str, cases: list[dict], rounds: int) -> list[dict]:
    """Each case timed with the baseline tree and this one, interleaved ``rounds`` times (best kept)."""
    from pathlib import Path

    here = str(Path(__file__).resolve().parents[1])
    rows = []
    for case in cases:
        best = {}
        for _ in range(rounds):
            for label, tree in (("before", baseline), ("after", here)):
                result = run_worker(tree, case)
                if label in best:
                    for key in ("encode_seconds", "encode_cpu_seconds", "decode_seconds", "decode_cpu_seconds"):
                        result[key] = min(result[key], best[label][key])
                best[label] = result
        rows.append({"case": case, **best})
        b, a = best["before"], best["after"]
        n = a["anchors"]
        name = case.get("run_dir") or f"random {case['method']} (outliers {case['outliers']:g})"
        print(f"{a['method']:<16} {n:>7} {b['size_bytes']:>10} {a['size_bytes']:>10} "
              f"{100 * (a['size_bytes'] / b['size_bytes'] - 1):>+7.2f}% "
              f"{1e6 * b['encode_cpu_seconds'] / n:>7.1f} {1e6 * a['encode_cpu_seconds'] / n:>7.1f} "
              f"{1e6 * b['decode_cpu_seconds'] / n:>7.1f} {1e6 * a['decode_cpu_seconds'] / n:>7.1f} "
              f"{1e6 * b['coder_encode_cpu_seconds'] / n:>7.1f} {1e6 * a['coder_encode_cpu_seconds'] / n:>7.1f} "
              f"{1e6 * b['coder_decode_cpu_seconds'] / n:>7.1f} {1e6 * a['coder_decode_cpu_seconds'] / n:>7.1f}  {name}",
              flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", nargs="+", default=[],
                        help="time these runs' trained models (the synthetic sweeps then run only if "
                             "--anchors or --chunks is given)")
    parser.add_argument("--anchors", type=int, nargs="+", help="random models' sizes (default 1k .. 100k)")
    parser.add_argument("--outliers", type=float, default=0.0,
                        help="share of the random models' values moved by --outlier-steps steps")
    parser.add_argument("--outlier-steps", type=float, default=300.0)
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK_ANCHORS,
                        help="anchors per context chunk (runs and the sweep over N)")
    parser.add_argument("--chunks", type=int, nargs="*",
                        help="chunk sizes compared at --chunk-sweep-anchors anchors (default 1k .. 30k; "
                             "empty: skip)")
    parser.add_argument("--chunk-sweep-anchors", type=int, default=30000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--baseline", help="a checkout of another version: time the same models with it and "
                                           "with this one (before/after), interleaved")
    parser.add_argument("--methods", nargs="+", default=["hac"],
                        help="with --baseline: methods of the random models (with --anchors)")
    parser.add_argument("--rounds", type=int, default=2, help="with --baseline: interleaved rounds (best kept)")
    args = parser.parse_args()
    if args.baseline:
        cases = [{"run_dir": str(r), "repeats": args.repeats} for r in args.run_dir]
        cases += [{"method": m, "anchors": n, "seed": n, "outliers": args.outliers,
                   "outlier_steps": args.outlier_steps, "repeats": args.repeats}
                  for m in args.methods for n in (args.anchors or [])]
        print(f"before: {args.baseline}; after: this tree; one thread, CPU time per anchor (best of "
              f"{args.rounds} interleaved rounds x {args.repeats} repeats)")
        print(f"{'method':<16} {'anchors':>7} {'bytes bef':>10} {'bytes aft':>10} {'size':>8} "
              f"{'enc bef':>7} {'enc aft':>7} {'dec bef':>7} {'dec aft':>7} {'Genc b':>7} {'Genc a':>7} "
              f"{'Gdec b':>7} {'Gdec a':>7}  model (G: the Gaussian streams alone)")
        rows = compare(args.baseline, cases, args.rounds)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"device": "cpu", "processor": platform.processor() or platform.machine(),
                           "threads": 1, "torch": torch.__version__, "baseline": args.baseline, "rows": rows},
                          f, indent=2)
        return
    synthetic = not args.run_dir or args.anchors is not None or args.chunks is not None
    anchors = (args.anchors or [1000, 3000, 10000, 30000, 100000]) if synthetic else []
    chunks = (args.chunks if args.chunks is not None else [1000, 3000, 10000, 30000]) if synthetic else []
    torch.set_num_threads(args.threads)
    warm_up()  # the coder's tables, built outside the timings
    warm = random_hac(500, seed=99, outliers=0.01)
    time_codec(warm, args.chunk, 1)

    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    run_rows = []
    if args.run_dir:
        for run_dir in args.run_dir:
            run_rows.append(time_run(run_dir, args.chunk, args.repeats))
        print("\ntrained models:")
        print_per_anchor(run_rows)

    rows = []
    if anchors:
        print(f"\nrandom models (outliers {args.outliers:g} x {args.outlier_steps:g} steps):")
        for n in anchors:
            model = random_hac(n, seed=n, outliers=args.outliers, outlier_steps=args.outlier_steps)
            rows.append({"anchors": coded_anchors(model), "chunk_anchors": args.chunk,
                         "outliers": args.outliers, "outlier_steps": args.outlier_steps,
                         **time_codec(model, args.chunk, args.repeats, with_context=True)})
        print_per_anchor(rows)

    chunk_rows = []
    if chunks:
        n = args.chunk_sweep_anchors
        model = random_hac(n, seed=n, outliers=args.outliers, outlier_steps=args.outlier_steps)
        print(f"\nchunk size at {n} anchors:")
        print(f"{'chunk':>8} {'encode s':>9} {'decode s':>9} {'size bytes':>11}")
        for chunk in chunks:
            result = {"anchors": coded_anchors(model), "chunk_anchors": chunk,
                      **time_codec(model, chunk, args.repeats)}
            chunk_rows.append(result)
            print(f"{chunk:>8} {result['encode_seconds']:>9.3f} {result['decode_seconds']:>9.3f} "
                  f"{result['size_bytes']:>11}")

    extrapolated = {}
    if len(rows) >= 2:
        counts = [r["anchors"] for r in rows]
        for clock in ("", "cpu_"):  # wall-clock, then CPU time (the steadier on a busy machine)
            enc = linear_fit(counts, [r[f"encode_{clock}seconds"] for r in rows])
            dec = linear_fit(counts, [r[f"decode_{clock}seconds"] for r in rows])
            fit = {"anchors": MIPNERF360_ANCHORS,
                   "encode_seconds": enc[0] + enc[1] * MIPNERF360_ANCHORS,
                   "decode_seconds": dec[0] + dec[1] * MIPNERF360_ANCHORS,
                   "encode_fit": enc, "decode_fit": dec}
            extrapolated["cpu" if clock else "wall"] = fit
            name = "CPU time" if clock else "wall-clock"
            print(f"\nlinear fit ({name}): encode {enc[0]:.3f} s + {1e6 * enc[1]:.2f} us/anchor, "
                  f"decode {dec[0]:.3f} s + {1e6 * dec[1]:.2f} us/anchor")
            print(f"extrapolated to {MIPNERF360_ANCHORS} anchors (Mip-NeRF360 size), this CPU: "
                  f"encode {fit['encode_seconds']:.1f} s, decode {fit['decode_seconds']:.1f} s")
            for label, (e, d) in PUBLISHED.items():
                print(f"  published {label} (A100 GPU, Mip-NeRF360): encode {e:.2f} s, decode {d:.2f} s "
                      f"-> ours/published: encode x{fit['encode_seconds'] / e:.2f}, "
                      f"decode x{fit['decode_seconds'] / d:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": "cpu", "processor": platform.processor() or platform.machine(),
                       "threads": torch.get_num_threads(), "torch": torch.__version__, "runs": run_rows,
                       "sweep": rows,
                       "chunks": chunk_rows, "extrapolated": extrapolated, "published": PUBLISHED}, f,
                      indent=2)


if __name__ == "__main__":
    main()
