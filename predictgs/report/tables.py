"""Collect per-run ``metrics.json`` files and build the paper's tables from them.

Units. Runs store sizes in bytes and tables keep them (``Size [Bytes]``). For reading, tables also give
``Size [MiB]`` = bytes / 2**20, because the published HAC / HAC++ / Predict-GS tables print "MB" while
computing bytes / 2**20 (HAC's code divides bits by 8*1024*1024). The column names say MiB so that the
unit is never ambiguous; the paper's "15.26MB" for HAC is our "15.26" in ``Size [MiB]``. The per-scene
survey files (3DGS.zip format) use bytes only.

Size of a run: the real file size (``size_bytes``) when the run was encoded; otherwise the entropy
model's estimate (``estimated_size_bytes``), and the run is marked ``size_estimated``. Tables count the
scenes whose size is an estimate, so a table built from unencoded runs says so.

Reference accounting. Beside the file, every table gives the size the reference code would report for
the same model (``reference_size_bytes``, column ``Ref. size [MiB]``: HAC's 48 bits per anchor position and
fp32 networks, ...; each method states its rule in metrics.json's ``reference_accounting``). The file is
what we report; the reference accounting is what the published numbers count, so the comparison with
them (``report.paper``) uses it. Runs without it (older metrics.json) show "—".

Dataset values are plain means over scenes (HAC and the survey do the same); ``Scenes`` says how many.

Feature bits (Table 3). The paper's Table 3 splits the size into **Feature** (anchor features: f in HAC;
the Spatial Feature Pool together with the residual f_r in Predict-GS) and **Others** (everything else:
anchor positions, scaling, offsets, the entropy model's hash grid, masks, MLPs). **BSF** is the "Bit rate
Savings of anchor Features": (Feature - Feature_HAC) / Feature_HAC in percent, HAC's own row being -0%.
The paper measured it with HAC's official code, so the split uses the reference accounting per category
(``reference_bits``; for HAC, HAC++ and Predict-GS the same as the entropy model's ``estimated_bits``),
falling back to ``estimated_bits`` for runs without it; the table also gives the file's size. The
Feature categories are ``FEATURE_CATEGORIES``: ``feat`` (HAC's and Scaffold-GS's anchor features),
``residual`` and ``sfp`` (Predict-GS's residual f_r and Spatial Feature Pool; ``PredictGS.bit_categories``);
any other category counts as Others.

Method names. A run's ``method`` is its registered key (``hac``); tables print its ``method_label`` (the
method's display name recorded in metrics.json, e.g. "HAC"), or the key when a run has none.

Variants and the paper's settings. Predict-GS runs carry ``residual_dim``, ``schedule`` and ``ds_init``.
The paper's values of these settings are not written here: every function that tells a variant from the
main run takes them as ``defaults`` (a mapping setting -> value), which the workflow takes from the
method's own configuration (``predictgs.methods.predict_gs.paper_settings()``). The main tables use only
runs at those settings (a run without the field passes) and leave out the ablation methods (names
starting with ``predictgs_``). The ablation tables hold all but one setting at the default and vary the
remaining one.

Training seeds. A run records its training ``seed``; the tables average over every run of a group
(scenes and seeds alike), so a configuration with several seeds gives the mean over all of them.
"""

from __future__ import annotations

import glob
import math
import sys
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from predictgs.errors import ReportError
from predictgs.io import write_atomic
from predictgs.parse import load_json_text
from predictgs.report.bdrate import bd_psnr, bd_psnr_overlap, bd_rate, bd_rate_overlap

MIB = 2**20
# Table 3's "Feature" categories of estimated_bits (HAC / Scaffold-GS: feat; Predict-GS: residual + sfp).
FEATURE_CATEGORIES = frozenset({"feat", "residual", "sfp"})
BITS_PREFIX = "bits_"
REFERENCE_BITS_PREFIX = "reference_bits_"  # per category of reference_bits (the reference's accounting)
REFERENCE_SIZE = "reference_size_bytes"

REQUIRED_FIELDS = ("method", "benchmark", "scene", "lmbda", "psnr")
SCALAR_FIELDS = (
    "method",
    "benchmark",
    "scene",
    "lmbda",
    "iterations",
    "psnr",
    "ssim",
    "lpips",
    "lpips_alex",
    "num_anchors",
    "num_gaussians",
    "estimated_size_bytes",
    "reference_size_bytes",
    "train_seconds",
    "encode_seconds",
    "decode_seconds",
    "fps",
    "device",
    "residual_dim",
    "schedule",
    "ds_init",
    "method_label",
    "seed",
    "variant",
)
QUALITY_METRICS = ("psnr", "ssim", "lpips")
NUMERIC_MEAN_FIELDS = (
    "psnr",
    "ssim",
    "lpips",
    "lpips_alex",
    "size_bytes",
    "reference_size_bytes",
    "num_anchors",
    "num_gaussians",
    "train_seconds",
    "encode_seconds",
    "decode_seconds",
    "fps",
)

# Row order of the main methods in tables; other methods follow in name order.
METHOD_ORDER = ("3dgs", "scaffold", "hac", "hacpp", "predictgs", "predictgs_hacpp")

# Named rate points (HAC's "highrate"/"lowrate"; Predict-GS's "Ours"/"Ours (high rate)"). HAC++ publishes
# "high" and "low" without their lambdas; its run scripts use 0.004 and suggest 0.0005-0.003: we label
# 0.0005 and 0.004 (an assumption, docs/methods.md).
RATE_POINTS = {
    "hac": {"high": 0.001, "low": 0.004},
    "hacpp": {"high": 0.0005, "low": 0.004},
    "predictgs": {"high": 0.0005, "low": 0.004},
    "predictgs_hacpp": {"high": 0.0005, "low": 0.004},
}
RATE_POINTS_SYNTHETIC = {"hac": {"high": 0.0005, "low": 0.002}}
SYNTHETIC_BENCHMARKS = frozenset({"synthetic", "nerf_synthetic", "blender"})

# Table 4 rows: (the method that gives the row, printed name, w/ SFP, w/ f_r, w/ PT). Each method is a
# registered one (tests/test_report.py checks them against the registry).
COMPONENT_ABLATION = (
    ("hac", "Baseline", False, False, False),
    ("predictgs_sfp_only", "Ours w/ SFP", True, False, False),
    ("predictgs_no_pt", "Ours w/ SFP w/ f_r", True, True, False),
    # The second reading of "w/o PT" (docs/methods.md): no downsampling and no two stages.
    ("predictgs_no_pt_one_stage", "Ours w/ SFP w/ f_r (one stage)", True, True, False),
    ("predictgs", "Ours all", True, True, True),
)
ABLATION_METHODS = frozenset(method for method, *_ in COMPONENT_ABLATION if method not in ("hac", "predictgs"))
# Table 6 rows: each schedule the configuration accepts (predictgs.train.curriculum.SCHEDULES) -> its
# printed name, in the table's order. "none": the downsampled views through stage 1, then full resolution
# (the paper's "Non"); "off": full resolution throughout (no progressive training, as in Table 4).
SCHEDULE_NAMES = {
    "off": "Off (full resolution)",
    "none": "Non",
    "linear": "Linear",
    "cosine": "Ours (Cosine)",
}
SCHEDULE_ORDER = tuple(SCHEDULE_NAMES.values())

SURVEY_DATASETS = {
    "mipnerf360": "MipNeRF360",
    "tandt": "TanksAndTemples",
    "db": "DeepBlending",
    "synthetic": "SyntheticNeRF",
}
SURVEY_COLUMNS = ["Submethod", "PSNR", "SSIM", "LPIPS", "Size [Bytes]", "#Gaussians"]

# Markdown: decimals per column (anything else numeric: up to 4 significant decimals).
DECIMALS = {
    "PSNR": 2,
    "SSIM": 3,
    "LPIPS": 3,
    "LPIPS (Alex)": 3,
    "Size [MiB]": 2,
    "Ref. size [MiB]": 2,
    "Size [Bytes]": 0,
    "Feature [MiB]": 2,
    "Others [MiB]": 2,
    "Total [MiB]": 2,
    "Feature share [%]": 2,
    "BSF [%]": 2,
    "Train time [s]": 0,
    "Encode time [s]": 2,
    "Decode time [s]": 2,
    "Test FPS": 2,
    "#Anchors": 0,
    "#Gaussians": 0,
    "BD-rate [%]": 2,
    "BD-PSNR [dB]": 3,
    "PSNR overlap [% of method]": 0,
    "PSNR overlap [% of anchor]": 0,
}
BDRATE_COLUMNS = [
    "Benchmark", "Method", "Anchor", "Interpolation", "Method points", "Anchor points", "BD-rate [%]",
    "BD-PSNR [dB]", "PSNR overlap [% of method]", "PSNR overlap [% of anchor]", "Note",
]


# ---------------------------------------------------------------------------------------------------
# Loading


def find_metrics_files(source: str | Path | Iterable[str | Path]) -> list[Path]:
    """``metrics.json`` paths from a run folder (recursively), a glob pattern, one file, or a list."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            return sorted(path.rglob("metrics.json"))
        if path.is_file():
            return [path]
        return sorted(Path(p) for p in glob.glob(str(source), recursive=True))
    return [Path(p) for p in source]


def load_runs(source: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """One row per run: the scalar fields, ``size_bytes`` (real or estimated), ``size_estimated``,
    ``bits_<category>`` per estimated-bits category, ``section_bytes_<name>``, and ``path``."""
    paths = find_metrics_files(source)
    if not paths:
        raise ReportError(f"no metrics.json found in {source}")
    # A decoded model's evaluation (`predictgs eval`, kind "decoded_model") sits beside its run's own
    # metrics.json, which already carries the decoded quality; it is not a run of its own.
    records = [(path, _read_json(path)) for path in paths]
    rows = [run_row(data, path) for path, data in records if data.get("kind") != "decoded_model"]
    if not rows:
        raise ReportError(f"no run metrics.json found in {source} (only decoded-model evaluations)")
    return pd.DataFrame(rows)


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            data = load_json_text(handle.read())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ReportError(f"{path}: cannot read metrics ({error})") from error
    if not isinstance(data, dict):
        raise ReportError(f"{path}: metrics must be a JSON object")
    return data


def run_row(metrics: Mapping, path: str | Path = "<memory>") -> dict:
    """Flatten one metrics.json into a table row (see ``load_runs``)."""
    missing = [name for name in REQUIRED_FIELDS if metrics.get(name) is None]
    if missing:
        raise ReportError(f"{path}: missing field(s) {', '.join(missing)}")
    row: dict[str, object] = {name: metrics.get(name) for name in SCALAR_FIELDS}
    for name in ("method", "benchmark", "scene"):
        row[name] = str(row[name])
    row["lmbda"] = float(row["lmbda"])
    bits = metrics.get("estimated_bits") or {}
    for category, value in bits.items():
        row[BITS_PREFIX + category] = float(value)
    for category, value in (metrics.get("reference_bits") or {}).items():
        row[REFERENCE_BITS_PREFIX + category] = float(value)
    reference_size = metrics.get(REFERENCE_SIZE)
    row[REFERENCE_SIZE] = math.nan if reference_size is None else float(reference_size)
    for section, value in (metrics.get("section_bytes") or {}).items():
        row["section_bytes_" + section] = float(value)
    image_size = metrics.get("image_size")  # [width, height] of the training and test views
    if isinstance(image_size, (list, tuple)) and len(image_size) == 2:
        row["image_width"], row["image_height"] = int(image_size[0]), int(image_size[1])
    # The size the tables report: a method may declare it (3DGS: the PLY file the papers report), else
    # the bitstream's.
    real_size = metrics.get("table_size_bytes", metrics.get("size_bytes"))
    estimated_size = metrics.get("estimated_size_bytes")
    if estimated_size is None and bits:
        estimated_size = sum(bits.values()) / 8
    if real_size is not None:
        row["size_bytes"], row["size_estimated"] = float(real_size), False
    elif estimated_size is not None:
        row["size_bytes"], row["size_estimated"] = float(estimated_size), True
    else:
        raise ReportError(f"{path}: no size_bytes, estimated_size_bytes or estimated_bits")
    row["path"] = str(path)
    return row


# ---------------------------------------------------------------------------------------------------
# Selection and aggregation


def is_ablation_method(method: str) -> bool:
    """The variants of Table 4 (not methods of the main tables)."""
    return method in ABLATION_METHODS


def at_defaults(runs: pd.DataFrame, defaults: Mapping, fields: Iterable[str] | None = None) -> pd.Series:
    """True where each of ``fields`` (default: every setting of ``defaults``) is missing or equal to its
    default (strings compared case-blind)."""
    fields = list(defaults) if fields is None else fields
    keep = pd.Series(True, index=runs.index)
    for field in fields:
        if field in runs:
            default = defaults[field]
            keep &= pd.Series(
                [_is_missing(v) or _same(v, default) for v in runs[field]], index=runs.index, dtype=bool
            )
    return keep


def main_runs(runs: pd.DataFrame, defaults: Mapping) -> pd.DataFrame:
    """Runs for the main comparison: no ablation methods, Predict-GS at the paper's settings."""
    keep = ~runs["method"].map(is_ablation_method) & at_defaults(runs, defaults)
    return runs[keep]


def benchmark_means(runs: pd.DataFrame, by: Iterable[str] = ("benchmark", "method", "lmbda")) -> pd.DataFrame:
    """Mean over scenes of every numeric metric per group, with ``n_scenes`` and ``n_estimated_sizes``."""
    by = list(by)
    numeric = [
        c for c in runs.columns if c not in by and (c in NUMERIC_MEAN_FIELDS or c.startswith(BITS_PREFIX))
    ]
    grouped = runs.groupby(by, sort=False, dropna=False)
    means = grouped[numeric].mean()
    if REFERENCE_SIZE in means:  # a mean over some of the scenes only would compare unlike things: none
        means.loc[grouped[REFERENCE_SIZE].count() < grouped.size(), REFERENCE_SIZE] = math.nan
    means["n_scenes"] = grouped["scene"].nunique()
    means["n_estimated_sizes"] = grouped["size_estimated"].sum().astype(int)
    if "device" in runs:
        means["device"] = grouped["device"].agg(
            lambda v: ", ".join(sorted({str(x) for x in v if not _is_missing(x)}))
        )
    return _sort_rows(means.reset_index())


def rate_label(method: str, benchmark: str, lmbda: float) -> str:
    """The name of a published rate point ("high" or "low"), or "" for other lambdas."""
    table = RATE_POINTS_SYNTHETIC if benchmark in SYNTHETIC_BENCHMARKS else RATE_POINTS
    for label, value in table.get(method, {}).items():
        if math.isclose(lmbda, value, rel_tol=1e-9):
            return label
    return ""


def method_labels(runs: pd.DataFrame) -> dict[str, str]:
    """Method key -> printed name: the ``method_label`` its runs record (the first one given), else the key."""
    labels = {}
    for method, label in zip(runs["method"], runs["method_label"] if "method_label" in runs else runs["method"]):
        if method not in labels or labels[method] == method:
            labels[method] = method if _is_missing(label) or not str(label) else str(label)
    return labels


def method_name(method: str, labels: Mapping[str, str] | None = None) -> str:
    """The printed name of a method key (``labels``: from ``method_labels``; without one, the key)."""
    return (labels or {}).get(method, method)


# ---------------------------------------------------------------------------------------------------
# Tables


def quality_table(runs: pd.DataFrame, benchmark: str, *, defaults: Mapping) -> pd.DataFrame:
    """Tables 1/2 for one benchmark: one row per (method, lambda), means over scenes."""
    selected = main_runs(runs[runs["benchmark"] == benchmark], defaults)
    if selected.empty:
        raise ReportError(f"no runs for benchmark {benchmark!r}")
    means = benchmark_means(selected)
    labels = method_labels(selected)
    return pd.DataFrame(
        {
            "Method": means["method"].map(labels),
            "Rate": [rate_label(m, benchmark, l) for m, l in zip(means["method"], means["lmbda"])],
            "lambda": means["lmbda"],
            "PSNR": means["psnr"],
            "SSIM": means.get("ssim"),
            "LPIPS": means.get("lpips"),
            "Size [MiB]": means["size_bytes"] / MIB,
            "Ref. size [MiB]": reference_mib(means),
            "Size [Bytes]": means["size_bytes"],
            "#Gaussians": means.get("num_gaussians"),
            "Scenes": means["n_scenes"],
            "Scenes w/ estimated size": means["n_estimated_sizes"],
        }
    )


def reference_mib(means: pd.DataFrame) -> pd.Series:
    """The reference accounting's size in MiB per row (NaN where the runs do not record it)."""
    if REFERENCE_SIZE not in means:
        return pd.Series(math.nan, index=means.index)
    return means[REFERENCE_SIZE].astype(float) / MIB


def feature_categories(categories: Iterable[str]) -> list[str]:
    """The estimated-bits categories that Table 3 counts as anchor features."""
    return [c for c in categories if c in FEATURE_CATEGORIES]


def split_bits(runs: pd.DataFrame, prefix: str = BITS_PREFIX) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Per run: Table 3's Feature and Others in bits (a category a run lacks counts as 0), and whether the
    run has such bits at all; ``prefix``: the estimated bits (default) or ``REFERENCE_BITS_PREFIX``."""
    bit_columns = [c for c in runs.columns if c.startswith(prefix)]
    feature_columns = [prefix + c for c in feature_categories(c[len(prefix):] for c in bit_columns)]
    other_columns = [c for c in bit_columns if c not in feature_columns]
    has_bits = runs[bit_columns].notna().any(axis=1) if bit_columns else pd.Series(False, index=runs.index)
    return runs[feature_columns].sum(axis=1), runs[other_columns].sum(axis=1), has_bits


def split_reference_bits(runs: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Table 3's split on the reference accounting (``reference_bits``) where a run has it, else on the
    entropy model's estimates."""
    feature, others, has_bits = split_bits(runs)
    ref_feature, ref_others, has_reference = split_bits(runs, REFERENCE_BITS_PREFIX)
    return (ref_feature.where(has_reference, feature), ref_others.where(has_reference, others),
            has_bits | has_reference)


def feature_bits(runs: pd.DataFrame) -> pd.Series:
    """Table 3's Feature per run, in bits (NaN for a run without estimated bits)."""
    feature, _, has_bits = split_bits(runs)
    return feature.where(has_bits)


def bit_allocation_table(runs: pd.DataFrame, baseline: str = "hac", *, defaults: Mapping) -> pd.DataFrame:
    """Table 3: Feature / Others bits in MiB per (benchmark, method, lambda), and BSF against ``baseline``.

    Feature and Others are summed per run (a category a run lacks counts as 0), then averaged over scenes."""
    selected = main_runs(runs, defaults)
    if not any(c.startswith((BITS_PREFIX, REFERENCE_BITS_PREFIX)) for c in selected.columns):
        raise ReportError("no estimated_bits in the runs: cannot split the size into Feature and Others")
    feature, others, has_bits = split_reference_bits(selected)
    per_run = selected[["benchmark", "method", "lmbda", "scene"]].assign(
        feature_mib=feature / 8 / MIB, others_mib=others / 8 / MIB, file_mib=selected["size_bytes"] / MIB
    )
    per_run = per_run[has_bits]
    means = _sort_rows(
        per_run.groupby(["benchmark", "method", "lmbda"], sort=False)[["feature_mib", "others_mib", "file_mib"]]
        .mean()
        .reset_index()
    )
    feature_mib, others_mib = means["feature_mib"], means["others_mib"]
    table = pd.DataFrame(
        {
            "Benchmark": means["benchmark"],
            "Method": means["method"].map(method_labels(selected)),
            "lambda": means["lmbda"],
            "Feature [MiB]": feature_mib,
            "Others [MiB]": others_mib,
            "Total [MiB]": feature_mib + others_mib,
            "Feature share [%]": 100 * feature_mib / (feature_mib + others_mib),
        }
    )
    baseline_feature = {
        (b, l): f
        for b, m, l, f in zip(means["benchmark"], means["method"], means["lmbda"], feature_mib)
        if m == baseline
    }
    reference = [baseline_feature.get((b, l), np.nan) for b, l in zip(means["benchmark"], means["lmbda"])]
    table["BSF [%]"] = 100 * (feature_mib - reference) / reference
    table["Size [MiB]"] = means["file_mib"]  # the file, beside the reference accounting's Total
    return table


def efficiency_table(runs: pd.DataFrame, *, defaults: Mapping) -> pd.DataFrame:
    """Table 5: size, training / encoding / decoding time and test FPS per (benchmark, method, lambda)."""
    selected = main_runs(runs, defaults)
    means = benchmark_means(selected)
    return pd.DataFrame(
        {
            "Benchmark": means["benchmark"],
            "Method": means["method"].map(method_labels(selected)),
            "lambda": means["lmbda"],
            "Size [MiB]": means["size_bytes"] / MIB,
            "Ref. size [MiB]": reference_mib(means),
            "Train time [s]": means.get("train_seconds"),
            "Encode time [s]": means.get("encode_seconds"),
            "Decode time [s]": means.get("decode_seconds"),
            "Test FPS": means.get("fps"),
            "Device": means.get("device"),
            "Scenes": means["n_scenes"],
        }
    )


def component_ablation_table(runs: pd.DataFrame, *, defaults: Mapping) -> pd.DataFrame:
    """Table 4: HAC baseline, SFP only, SFP + residual, full method (with progressive training).

    The variants are told apart by method name (``COMPONENT_ABLATION``); only the full method is held
    at the default settings, since a variant may legitimately differ (e.g. no residual)."""
    rows = []
    for method, printed, with_sfp, with_residual, with_pt in COMPONENT_ABLATION:
        subset = runs[runs["method"] == method]
        subset = subset[(subset["method"] != "predictgs") | at_defaults(subset, defaults)]
        if subset.empty:
            continue
        for _, mean in benchmark_means(subset, by=("benchmark", "lmbda")).iterrows():
            rows.append(
                {
                    "Benchmark": mean["benchmark"],
                    "Method": printed,
                    "w/ SFP": with_sfp,
                    "w/ f_r": with_residual,
                    "w/ PT": with_pt,
                    "lambda": mean["lmbda"],
                    **_quality_columns(mean),
                }
            )
    return (
        _require_rows(rows, "component ablation (Table 4)")
        .sort_values(["Benchmark", "lambda"], kind="stable")
        .reset_index(drop=True)
    )


def schedule_table(runs: pd.DataFrame, method: str = "predictgs", *, defaults: Mapping) -> pd.DataFrame:
    """Table 6: downsampling schedules (off / none / linear / cosine) at the default residual size and
    initial scale."""
    if "schedule" not in runs:
        raise ReportError("no run records 'schedule'")
    others = [f for f in defaults if f != "schedule"]
    subset = runs[(runs["method"] == method) & at_defaults(runs, defaults, others)]
    subset = subset[subset["schedule"].notna()]
    subset = subset.assign(
        schedule_name=subset["schedule"].map(lambda s: SCHEDULE_NAMES.get(str(s).lower(), str(s)))
    )
    rows = [
        {
            "Benchmark": mean["benchmark"],
            "Schedule": mean["schedule_name"],
            "lambda": mean["lmbda"],
            **_quality_columns(mean),
        }
        for _, mean in benchmark_means(subset, by=("benchmark", "lmbda", "schedule_name")).iterrows()
    ]
    table = _require_rows(rows, "schedule ablation (Table 6)")
    order = {name: i for i, name in enumerate(SCHEDULE_ORDER)}
    table["_order"] = table["Schedule"].map(lambda s: order.get(s, len(order)))
    return (
        table.sort_values(["Benchmark", "lambda", "_order"], kind="stable")
        .drop(columns="_order")
        .reset_index(drop=True)
    )


def sweep_table(runs: pd.DataFrame, field: str, method: str = "predictgs", *, defaults: Mapping) -> pd.DataFrame:
    """A one-parameter sweep (``residual_dim``: Fig. 6, ``ds_init``: Fig. 7) other settings at default."""
    if field not in defaults:
        raise ReportError(f"unknown sweep field {field!r}; choose one of {', '.join(defaults)}")
    if field not in runs:
        raise ReportError(f"no run records {field!r}")
    others = [f for f in defaults if f != field]
    subset = runs[(runs["method"] == method) & at_defaults(runs, defaults, others) & runs[field].notna()]
    rows = [
        {
            "Benchmark": mean["benchmark"],
            field: mean[field],
            "lambda": mean["lmbda"],
            **_quality_columns(mean),
        }
        for _, mean in benchmark_means(subset, by=("benchmark", "lmbda", field)).iterrows()
    ]
    return (
        _require_rows(rows, f"{field} sweep")
        .sort_values(["Benchmark", "lambda", field], kind="stable")
        .reset_index(drop=True)
    )


def bd_table(
    runs: pd.DataFrame,
    benchmark: str,
    anchor: str | Iterable[str],
    methods: Iterable[str],
    interpolation: str = "pchip",
    *,
    defaults: Mapping,
) -> pd.DataFrame:
    """BD-rate [%] and BD-PSNR [dB] of each of ``methods`` against ``anchor`` (one method, or several:
    one row per pair, a method never against itself) on one benchmark, on the dataset means of the main
    runs' rate points (columns ``BDRATE_COLUMNS``).

    One row per pair, always: a pair that cannot be computed (a curve missing, too few rate points,
    PSNR ranges that do not overlap) gets NaN and a ``Note`` saying why, so that one missing value never
    stops the other rows; a value resting on a curve whose PSNR does not rise with size gets a warning
    in ``Note``. The PSNR overlap columns give the PSNR interval both curves cover (the one BD-rate
    averages over) as a percentage of each curve's PSNR range; ``Note`` warns when it, or the log-rate
    overlap of BD-PSNR, is below 75% of a curve's range (``report.bdrate``)."""
    anchors = [anchor] if isinstance(anchor, str) else list(anchor)
    selected = main_runs(runs[runs["benchmark"] == benchmark], defaults)
    means = benchmark_means(selected) if len(selected) else selected
    labels = method_labels(selected)
    rows = []
    for anchor, method in ((a, m) for a in anchors for m in methods if m != a):
        anchor_curve, test_curve = means[means["method"] == anchor], means[means["method"] == method]
        row = {
            "Benchmark": benchmark,
            "Method": method_name(method, labels),
            "Anchor": method_name(anchor, labels),
            "Interpolation": interpolation,
            "Method points": len(test_curve),
            "Anchor points": len(anchor_curve),
            "BD-rate [%]": math.nan,
            "BD-PSNR [dB]": math.nan,
            "PSNR overlap [% of method]": math.nan,
            "PSNR overlap [% of anchor]": math.nan,
            "Note": "",
        }
        if anchor_curve.empty:
            row["Note"] = f"not computed: no {anchor} runs on {benchmark}"
        elif test_curve.empty:
            row["Note"] = f"not computed: no {method} runs on {benchmark}"
        else:
            args = (anchor_curve["size_bytes"], anchor_curve["psnr"], test_curve["size_bytes"], test_curve["psnr"])
            names = dict(anchor_name=f"{anchor} on {benchmark}", test_name=f"{method} on {benchmark}",
                         method=interpolation)
            try:
                row["BD-rate [%]"] = bd_rate(*args, **names)
                row["BD-PSNR [dB]"] = bd_psnr(*args, **names)
                psnr_overlap = bd_rate_overlap(anchor_curve["psnr"], test_curve["psnr"])
                row["PSNR overlap [% of method]"] = 100 * psnr_overlap.test_fraction
                row["PSNR overlap [% of anchor]"] = 100 * psnr_overlap.anchor_fraction
                warnings_ = [
                    f"warning: {name}'s PSNR does not rise with size, so this value rests on a non-monotone curve"
                    for name, curve in ((method, test_curve), (anchor, anchor_curve)) if not is_monotone(curve)
                ]
                rate_overlap = bd_psnr_overlap(anchor_curve["size_bytes"], test_curve["size_bytes"])
                warnings_ += [overlap_warning(o, "BD-rate" if o is psnr_overlap else "BD-PSNR", anchor, method)
                              for o in (psnr_overlap, rate_overlap) if o.warning]
                row["Note"] = "; ".join(warnings_)
            except ReportError as error:
                row["BD-rate [%]"] = row["BD-PSNR [dB]"] = math.nan
                row["Note"] = f"not computed: {error}"
                print(f"BD-rate not computed: {error}", file=sys.stderr)
        rows.append(row)
    return pd.DataFrame(rows, columns=BDRATE_COLUMNS)


def overlap_warning(overlap, measure: str, anchor: str, method: str) -> str:
    """The Note of a BD value whose curves share less than 75% of a curve's range."""
    text = f"warning: {measure} rests on a short overlap: {overlap.describe(anchor, method)} (below 75%"
    if overlap.inconclusive and measure == "BD-rate":
        text += "; below 50% a verdict treats it as inconclusive"
    return text + "): add rate points where the curves meet"


def is_monotone(curve: pd.DataFrame) -> bool:
    """Whether PSNR rises strictly with size along a curve's rate points (what an R-D curve should do)."""
    psnr = curve.sort_values("size_bytes")["psnr"].to_numpy()
    return bool((psnr[1:] > psnr[:-1]).all())


# ---------------------------------------------------------------------------------------------------
# Survey (3DGS.zip) per-scene files


def survey_table(scene_runs: pd.DataFrame, labels: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One scene of one method in the survey's format, one row per rate point (lambda ascending); the
    runs of several training seeds are averaged per rate point."""
    numeric = ["psnr", "ssim", "lpips", "size_bytes", "num_gaussians"]
    points = scene_runs.groupby(["method", "lmbda"], sort=False)[numeric].mean().reset_index()
    points = points.sort_values("lmbda", kind="stable")
    return pd.DataFrame(
        {
            "Submethod": [
                f"{method_name(m, labels)}-lambda{l:g}" for m, l in zip(points["method"], points["lmbda"])
            ],
            "PSNR": points["psnr"].to_numpy(),
            "SSIM": points["ssim"].to_numpy(),
            "LPIPS": points["lpips"].to_numpy(),
            "Size [Bytes]": points["size_bytes"].round().astype("int64").to_numpy(),
            "#Gaussians": points["num_gaussians"].round().astype("int64").to_numpy(),
        },
        columns=SURVEY_COLUMNS,
    )


def write_survey_csvs(runs: pd.DataFrame, out_dir: str | Path, *, defaults: Mapping) -> list[Path]:
    """Write ``<out_dir>/<method>/<Dataset>/<scene>.csv`` (the survey's layout, per method), atomically."""
    written = []
    selected = main_runs(runs, defaults)
    labels = method_labels(selected)
    for (method, benchmark, scene), scene_runs in selected.groupby(
        ["method", "benchmark", "scene"], sort=True
    ):
        if scene_runs["size_estimated"].any():
            warnings.warn(
                f"{method}/{benchmark}/{scene}: survey file holds estimated sizes (run not encoded)",
                stacklevel=2,
            )
        path = Path(out_dir) / method / SURVEY_DATASETS.get(benchmark, benchmark) / f"{scene}.csv"
        write_atomic(path, survey_table(scene_runs, labels).to_csv(index=False, lineterminator="\n"))
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------------------
# Markdown


def to_markdown(table: pd.DataFrame, decimals: Mapping[str, int] | None = None, missing: str = "—") -> str:
    """A GitHub pipe table; numbers rounded per column (``DECIMALS``, updated by ``decimals``)."""
    places = {**DECIMALS, **(decimals or {})}
    header = [str(c) for c in table.columns]
    numeric = [
        pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])
        for c in table.columns
    ]
    lines = [
        "| " + " | ".join(_escape(h) for h in header) + " |",
        "|" + "|".join("---:" if is_number else "---" for is_number in numeric) + "|",
    ]
    for values in table.itertuples(index=False):
        cells = [_format_cell(v, places.get(c), missing) for c, v in zip(header, values)]
        lines.append("| " + " | ".join(_escape(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def _format_cell(value, decimals: int | None, missing: str) -> str:
    if _is_missing(value):
        return missing
    if isinstance(value, (bool, np.bool_)):
        return "✓" if value else "—"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if decimals is not None:
            return f"{value:.{decimals}f}"
        return f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    return str(value)


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# ---------------------------------------------------------------------------------------------------
# LaTeX

_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                   "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                   "✓": r"\checkmark{}", "—": "--", "–": "--", "λ": r"$\lambda$", "≥": r"$\geq$", "≤": r"$\leq$",
                   "±": r"$\pm$", "×": r"$\times$", "Δ": r"$\Delta$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(char, char) for char in str(text))


def to_latex(table: pd.DataFrame, title: str = "", notes: Iterable[str] = (),
             decimals: Mapping[str, int] | None = None, missing: str = "—") -> str:
    """A booktabs ``tabular`` (needs \\usepackage{booktabs}, and amssymb for \\checkmark), with the same
    numbers as :func:`to_markdown`; the title and notes as comments above it."""
    places = {**DECIMALS, **(decimals or {})}
    header = [str(c) for c in table.columns]
    numeric = [pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])
               for c in table.columns]
    lines = [f"% {latex_escape(title)}" if title else None, *(f"% {note}" for note in notes),
             r"\begin{tabular}{" + "".join("r" if n else "l" for n in numeric) + "}", r"\toprule",
             " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
    for values in table.itertuples(index=False):
        cells = [_format_cell(v, places.get(c), missing) for c, v in zip(header, values)]
        lines.append(" & ".join(latex_escape(cell) for cell in cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(line for line in lines if line is not None) + "\n"


# ---------------------------------------------------------------------------------------------------
# Helpers


def _quality_columns(mean: pd.Series) -> dict:
    return {
        "PSNR": mean.get("psnr"),
        "SSIM": mean.get("ssim"),
        "LPIPS": mean.get("lpips"),
        "Size [MiB]": mean["size_bytes"] / MIB,
        "Ref. size [MiB]": mean.get(REFERENCE_SIZE, math.nan) / MIB,
        "Scenes": mean["n_scenes"],
    }


def _require_rows(rows: list[dict], what: str) -> pd.DataFrame:
    if not rows:
        raise ReportError(f"no runs for the {what}")
    return pd.DataFrame(rows)


def _sort_rows(means: pd.DataFrame) -> pd.DataFrame:
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    methods = means["method"] if "method" in means else pd.Series("", index=means.index)
    keys = means.assign(_rank=methods.map(lambda m: rank.get(m, len(rank))))
    order = [c for c in ("benchmark", "_rank", "method", "lmbda") if c in keys]
    return keys.sort_values(order, kind="stable").drop(columns="_rank").reset_index(drop=True)


def _is_missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _same(value, default) -> bool:
    if isinstance(default, str) or isinstance(value, str):
        return str(value).strip().lower() == str(default).strip().lower()
    return math.isclose(float(value), float(default), rel_tol=1e-9, abs_tol=1e-12)
