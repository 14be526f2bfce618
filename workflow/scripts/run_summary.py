"""Merge one run's records into ``summary.json``, the file the tables read.

- ``metrics.json`` (``predictgs train``, completed by ``predictgs encode`` with the bitstream's size and
  the encode/decode times) is the base;
- the decoded model's evaluation (``predictgs eval``, when the run went through the codec) gives the
  reported quality (PSNR, SSIM, LPIPS: what a user gets from the bitstream), the rendering speed and the
  device that measured it; the trained model's own values are kept under ``trained``;
- the Snakemake benchmark files of the run's jobs give their wall time and peak memory (``jobs``).

Deliberately light: one such job runs per run, so it imports only the torch-free modules
``predictgs.metric_keys`` (the quality keys, shared with the codec pipeline) and ``predictgs.io`` (atomic
writes; numpy and json).
"""

import csv
import json
import math
import os

from predictgs.io import write_json
from predictgs.metric_keys import QUALITY_KEYS as QUALITY
FROM_DECODED = ("fps", "num_anchors", "num_gaussians")
STEPS = ("train", "encode", "decode", "eval")
# A decoded model whose PSNR differs more than this from the trained (quantised) model's is reported
# in the log: the codec is meant to be lossless with respect to the quantised model.
PSNR_TOLERANCE_DB = 0.05


def read_json(path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def read_job_benchmark(path) -> dict | None:
    """Wall time (s), peak RSS (MiB) and CPU time (s) from a Snakemake ``benchmark:`` TSV."""
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if not rows:
        return None
    row = rows[-1]

    def number(key):
        try:
            value = float(row.get(key, "nan"))
        except ValueError:
            return None
        return value if math.isfinite(value) else None

    return {"seconds": number("s"), "max_rss_mib": number("max_rss"), "cpu_seconds": number("cpu_time")}


def summarize(metrics_path, *, benchmark, scene, method, variant, seed=None, decoded_path=None,
              bitstream_path=None, job_benchmarks=None, warn=print) -> dict:
    summary = read_json(metrics_path)
    # The workflow's names win: the CLI derives the scene name from the folder name.
    summary.update(benchmark=benchmark, scene=scene, method=method, variant=variant)
    if seed is not None:
        if summary.get("seed") is not None and int(summary["seed"]) != int(seed):
            warn(f"{metrics_path}: trained with seed {summary['seed']}, but its folder says train_seed{seed}")
        summary["seed"] = int(seed)
    if bitstream_path is not None:
        file_size = os.path.getsize(bitstream_path)
        summary["bitstream_bytes"] = file_size
        if summary.get("size_bytes") is None:
            summary["size_bytes"] = file_size
        elif int(summary["size_bytes"]) != file_size:
            warn(f"{metrics_path}: size_bytes {summary['size_bytes']} != bitstream file size {file_size}")
    if decoded_path is not None:
        decoded = read_json(decoded_path)
        summary["trained"] = {key: summary.get(key) for key in QUALITY + ("device",) if key in summary}
        for key in QUALITY:  # all quality values from the decoded model (the trained ones: "trained")
            summary.pop(key, None)
        for key in QUALITY + FROM_DECODED:
            if decoded.get(key) is not None:
                summary[key] = decoded[key]
        summary["train_device"] = summary.get("device")
        if decoded.get("device") is not None:
            summary["device"] = decoded["device"]
        summary["quality_from"] = "decoded"
        trained_psnr, decoded_psnr = summary["trained"].get("psnr"), decoded.get("psnr")
        if trained_psnr is not None and decoded_psnr is not None:
            summary["decoded_psnr_change"] = decoded_psnr - trained_psnr
            if abs(decoded_psnr - trained_psnr) > PSNR_TOLERANCE_DB:
                warn(f"{decoded_path}: decoded PSNR {decoded_psnr:.3f} dB differs from the trained model's "
                     f"{trained_psnr:.3f} dB")
    else:
        summary["quality_from"] = "trained"
    jobs = {}
    for step, path in (job_benchmarks or {}).items():
        record = read_job_benchmark(path)
        if record is not None:
            jobs[step] = record
    summary["jobs"] = jobs
    return summary


def write_summary(summary: dict, path) -> None:
    write_json(path, summary)


def main(sm) -> None:
    """Rule run_summary (workflow/rules/runs.smk)."""
    run_dir = os.path.dirname(sm.output[0])
    with open(sm.log[0], "w", encoding="utf-8") as log:
        summary = summarize(
            sm.input.metrics,
            benchmark=sm.wildcards.benchmark,
            scene=sm.wildcards.scene,
            method=sm.wildcards.method,
            variant=sm.wildcards.variant,
            seed=int(sm.wildcards.train_seed),
            decoded_path=sm.input.get("decoded"),
            bitstream_path=sm.input.get("bitstream"),
            job_benchmarks={step: f"{run_dir}/benchmarks/{step}.tsv" for step in STEPS},
            warn=lambda message: print(f"warning: {message}", file=log),
        )
        write_summary(summary, sm.output[0])


if "snakemake" in globals():
    main(snakemake)  # noqa: F821 - injected by Snakemake
