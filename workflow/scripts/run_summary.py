"""Merge one run's records into ``summary.json``, the file the tables read, after checking them against
each other and against the bitstream: an intermediate that was edited by hand, or left from an earlier
model, is refused (the job fails with one line in its log), never tabulated.

- ``metrics.json`` (``predictgs train``, completed by ``predictgs encode`` with the bitstream's size, CRC32
  and the encode/decode times) is the base; the bitstream ``scene.pgs`` must have the size and CRC32 it
  records (``size_bytes``, ``bitstream_crc32``);
- the decoded model's evaluation is read from ``decoded/metrics.json``, what ``predictgs eval`` wrote; the
  workflow's copy ``decoded_metrics.json`` must be identical to it, and the bitstream it was decoded from
  (``source_bytes``, ``source_crc32``) must be the run's ``scene.pgs``. It gives the reported quality (PSNR,
  SSIM, LPIPS: what a user gets from the bitstream), the rendering speed and the device that measured it;
  the trained model's own values are kept under ``trained``;
- the Snakemake benchmark files of the run's jobs give their wall time and peak memory (``jobs``).

Files written by an earlier predictgs lack the CRC fields: their sizes are still checked, and the log
says that the CRC was not.

Deliberately light: one such job runs per run, so it imports only the torch-free modules
``predictgs.metric_keys`` (the quality keys, shared with the codec pipeline), ``predictgs.parse`` (JSON
without tracebacks) and ``predictgs.io`` (atomic writes; numpy and json).

Outside Snakemake, ``python workflow/scripts/run_summary.py RUN_DIR --benchmark B --scene S --method M
--variant V --seed N`` checks a run folder and writes RUN_DIR/summary.json (exit 2 and one line on a
problem).
"""

import argparse
import csv
import math
import os
import sys
import zlib

from predictgs.io import write_json
from predictgs.metric_keys import QUALITY_KEYS as QUALITY
from predictgs.parse import HugeInt, load_json_text

FROM_DECODED = ("fps", "num_anchors", "num_gaussians")
STEPS = ("train", "encode", "decode", "eval")
NUMBER_KEYS = QUALITY + FROM_DECODED + ("size_bytes", "source_bytes", "bitstream_crc32", "source_crc32")
# A decoded model whose PSNR differs more than this from the trained (quantised) model's is reported
# in the log: the codec is meant to be lossless with respect to the quantised model.
PSNR_TOLERANCE_DB = 0.05
REBUILD = "delete it: the workflow rebuilds it from the run's own files"


class SummaryError(Exception):
    """An intermediate file that cannot be tabulated: unreadable, malformed, or not matching the others."""


def read_json(path) -> dict:
    """A JSON object from ``path``; anything else is a SummaryError naming the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = load_json_text(handle.read())
    except FileNotFoundError:
        raise SummaryError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise SummaryError(f"{path} cannot be read as JSON ({reason}); {REBUILD}") from None
    if not isinstance(data, dict):
        raise SummaryError(f"{path} does not hold a JSON object; {REBUILD}")
    return data


def check_record(record: dict, path) -> dict:
    """The fields the tables use have their types: numbers finite (or null), names strings."""
    for key in NUMBER_KEYS:
        value = record.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise SummaryError(f"{path}: {key} must be a finite number, got {value!r}; {REBUILD}")
    for key in ("method", "device"):
        if record.get(key) is not None and not isinstance(record[key], str):
            raise SummaryError(f"{path}: {key} must be a string, got {record[key]!r}; {REBUILD}")
    return record


def _finite(value) -> bool:
    if isinstance(value, HugeInt):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def file_crc32(path) -> tuple[int, int]:
    """(size in bytes, CRC32) of a file, read in blocks."""
    crc, size = 0, 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            crc = zlib.crc32(block, crc)
            size += len(block)
    return size, crc & 0xFFFFFFFF


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
            value = float(row.get(key) or "nan")
        except ValueError:
            return None
        return value if math.isfinite(value) else None

    return {"seconds": number("s"), "max_rss_mib": number("max_rss"), "cpu_seconds": number("cpu_time")}


def check_bitstream(summary: dict, metrics_path, bitstream_path, warn) -> tuple[int, int]:
    """The bitstream is the one metrics.json describes (size, CRC32). -> (size, CRC32)."""
    if not os.path.isfile(bitstream_path):
        raise SummaryError(f"{bitstream_path} is missing; run the workflow again to encode the run")
    size, crc = file_crc32(bitstream_path)
    if summary.get("size_bytes") is None:
        raise SummaryError(f"{metrics_path} records no size_bytes although {bitstream_path} exists (was the run "
                           "encoded?); run the workflow again to encode it")
    if int(summary["size_bytes"]) != size:
        raise SummaryError(f"{metrics_path}: size_bytes {summary['size_bytes']} is not the size of {bitstream_path} "
                           f"({size} bytes): the file was replaced or metrics.json edited; encode the run again")
    if summary.get("bitstream_crc32") is None:
        warn(f"{metrics_path} records no bitstream_crc32 (encoded by an earlier predictgs): size checked, CRC not")
    elif int(summary["bitstream_crc32"]) != crc:
        raise SummaryError(f"{bitstream_path} has CRC32 {crc}, not the {summary['bitstream_crc32']} that "
                           f"{metrics_path} records: the file was replaced after encoding; encode the run again")
    return size, crc


def read_decoded(decoded_path, decoded_source, bitstream, warn) -> dict:
    """The decoded model's evaluation: ``decoded_source`` (decoded/metrics.json), checked against its copy
    ``decoded_path`` and against the bitstream ((size, CRC32) or None)."""
    decoded = check_record(read_json(decoded_source), decoded_source)
    if decoded_path is not None and os.path.abspath(decoded_path) != os.path.abspath(decoded_source):
        copy = read_json(decoded_path)
        if copy != decoded:
            changed = sorted(k for k in set(copy) | set(decoded) if copy.get(k) != decoded.get(k))
            raise SummaryError(f"{decoded_path} differs from {decoded_source} (in {', '.join(changed[:5])}): edited by "
                               f"hand or left from an earlier evaluation; {REBUILD}")
    if bitstream is not None:
        size, crc = bitstream
        if decoded.get("source_crc32") is None:
            warn(f"{decoded_source} records no source_crc32 (decoded by an earlier predictgs): not checked "
                 "against the bitstream")
        elif int(decoded["source_crc32"]) != crc or (decoded.get("source_bytes") is not None
                                                    and int(decoded["source_bytes"]) != size):
            raise SummaryError(f"{decoded_source} evaluates a model decoded from another bitstream (CRC32 "
                               f"{decoded['source_crc32']}, the run's is {crc}): decode and evaluate the run again "
                               f"(delete {os.path.dirname(decoded_source)} and run the workflow)")
    return decoded


def summarize(metrics_path, *, benchmark, scene, method, variant, seed=None, decoded_path=None,
              decoded_source=None, bitstream_path=None, job_benchmarks=None, warn=print) -> dict:
    """summary.json's content. ``decoded_path``: the workflow's decoded_metrics.json; ``decoded_source``: the
    decoded folder's metrics.json (default: decoded/metrics.json beside metrics.json). SummaryError when
    the files do not agree."""
    summary = check_record(read_json(metrics_path), metrics_path)
    trained_method = summary.get("method")
    # The workflow's names win: the CLI derives the scene name from the folder name.
    summary.update(benchmark=benchmark, scene=scene, method=method, variant=variant)
    if seed is not None:
        if isinstance(summary.get("seed"), int) and summary["seed"] != int(seed):
            warn(f"{metrics_path}: trained with seed {summary['seed']}, but its folder says train_seed{seed}")
        summary["seed"] = int(seed)
    bitstream = None
    if bitstream_path is not None:
        bitstream = check_bitstream(summary, metrics_path, bitstream_path, warn)
        summary["bitstream_bytes"] = bitstream[0]
    if decoded_path is not None or decoded_source is not None:
        if decoded_source is None:
            decoded_source = os.path.join(os.path.dirname(os.path.abspath(metrics_path)), "decoded", "metrics.json")
        decoded = read_decoded(decoded_path, decoded_source, bitstream, warn)
        if decoded.get("method") is not None and trained_method is not None and decoded["method"] != trained_method:
            raise SummaryError(f"{decoded_source} evaluates a {decoded['method']} model, {metrics_path} a "
                               f"{trained_method} run: decode and evaluate the run again")
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
                warn(f"{decoded_source}: decoded PSNR {decoded_psnr:.3f} dB differs from the trained model's "
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
        try:
            summary = summarize(
                sm.input.metrics,
                benchmark=sm.wildcards.benchmark,
                scene=sm.wildcards.scene,
                method=sm.wildcards.method,
                variant=sm.wildcards.variant,
                seed=int(sm.wildcards.train_seed),
                decoded_path=sm.input.get("decoded"),
                decoded_source=(os.path.join(sm.input.get("decoded_dir"), "metrics.json")
                                if sm.input.get("decoded_dir") else None),
                bitstream_path=sm.input.get("bitstream"),
                job_benchmarks={step: f"{run_dir}/benchmarks/{step}.tsv" for step in STEPS},
                warn=lambda message: print(f"warning: {message}", file=log),
            )
        except SummaryError as err:
            print(f"run_summary: error: {err}", file=log)
            print(f"run_summary: error: {err}", file=sys.stderr)
            sys.exit(1)
        write_summary(summary, sm.output[0])


def cli(argv=None) -> int:
    """Check a run folder and write its summary.json; exit 2 and one line on a problem."""
    parser = argparse.ArgumentParser(prog="run_summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="run folder (metrics.json; scene.pgs, decoded/ when encoded)")
    for name in ("benchmark", "scene", "method", "variant"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--seed", type=int, default=None, help="the training seed of the folder's name")
    parser.add_argument("--output", help="default: RUN_DIR/summary.json")
    args = parser.parse_args(argv)
    run = args.run_dir
    encoded = os.path.exists(os.path.join(run, "scene.pgs"))
    warnings = []
    try:
        summary = summarize(
            os.path.join(run, "metrics.json"), benchmark=args.benchmark, scene=args.scene, method=args.method,
            variant=args.variant, seed=args.seed,
            decoded_path=os.path.join(run, "decoded_metrics.json") if encoded else None,
            decoded_source=os.path.join(run, "decoded", "metrics.json") if encoded else None,
            bitstream_path=os.path.join(run, "scene.pgs") if encoded else None,
            job_benchmarks={step: os.path.join(run, "benchmarks", f"{step}.tsv") for step in STEPS},
            warn=warnings.append,
        )
        write_summary(summary, args.output or os.path.join(run, "summary.json"))
    except (SummaryError, OSError) as err:
        print(f"run_summary: error: {err}", file=sys.stderr)
        return 2
    for message in warnings:
        print(f"run_summary: warning: {message}", file=sys.stderr)
    return 0


if "snakemake" in globals():
    main(snakemake)  # noqa: F821 - injected by Snakemake
elif __name__ == "__main__":
    sys.exit(cli())
