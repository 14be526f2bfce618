"""The scale a verdict speaks about, from the runs' own metrics: scene, image size, iterations, anchors at
the end of the run, and the share of the file that the networks and the hash grids take.

A relation the paper reports at 10^5-10^6 anchors after 30k iterations may not appear at a few thousand
anchors after a few hundred, where the fixed costs (networks, hash grids) are a large part of every file;
the verdicts print these figures beside the verdicts (``writer.verdicts_markdown``) so that a reader
sees which scale each verdict is about.

- **anchors**: ``num_anchors`` of the run (of the decoded model when the run went through the codec: the
  anchors the file holds); 3DGS has Gaussians instead (``num_gaussians``);
- **networks**: the ``mlps`` section of the file (every MLP's weights), else the entropy model's ``mlps``
  estimate for a run that was not encoded; as a percentage of the size the tables report;
- **hash grids**: the binarised hash-grid sections (``hash``: the context model; ``sfp``: Predict-GS's
  Spatial Feature Pool), likewise.

Runs are grouped over training seeds (benchmark, scene, method, variant, lambda): mean and [min, max].
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from predictgs.report.tables import BITS_PREFIX, method_labels, method_name

NETWORK_SECTIONS = ("mlps",)
HASH_GRID_SECTIONS = ("hash", "sfp")
REFERENCE_POINT = ("hac", 0.004)  # the run each benchmark's footnote quotes (HAC at its default rate)
SCALE_COLUMNS = [
    "Benchmark", "Scene", "Method", "Variant", "lambda", "Seeds", "Resolution", "Iterations", "Anchors",
    "Anchors (min)", "Anchors (max)", "Networks [% of file]", "Hash grids [% of file]", "Size [KiB]",
]
SCALE_DECIMALS = {"Anchors": 0, "Anchors (min)": 0, "Anchors (max)": 0, "Networks [% of file]": 1,
                  "Hash grids [% of file]": 1, "Size [KiB]": 0}


def _is_missing(value) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _part_bytes(runs: pd.DataFrame, sections: tuple[str, ...]) -> pd.Series:
    """Bytes of the given file sections per run (the entropy model's estimate where a run has no file)."""
    total = pd.Series(0.0, index=runs.index)
    known = pd.Series(False, index=runs.index)
    for name in sections:
        coded = runs.get(f"section_bytes_{name}")
        estimated = runs.get(f"{BITS_PREFIX}{name}")
        value = pd.Series(np.nan, index=runs.index)
        if estimated is not None:
            value = estimated.astype(float) / 8
        if coded is not None:
            value = coded.astype(float).where(coded.notna(), value)
        known |= value.notna()
        total += value.fillna(0.0)
    return total.where(known)


def run_scale(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run: anchors (3DGS: Gaussians), networks' and hash grids' share of the file [%], resolution."""
    scale = pd.DataFrame(index=runs.index)
    anchors = runs["num_anchors"] if "num_anchors" in runs else pd.Series(np.nan, index=runs.index)
    if "num_gaussians" in runs:
        anchors = anchors.where(anchors.notna(), runs["num_gaussians"].where(runs["method"] == "3dgs"))
    scale["anchors"] = pd.to_numeric(anchors, errors="coerce")
    size = runs["size_bytes"].astype(float)
    scale["networks_pct"] = 100 * _part_bytes(runs, NETWORK_SECTIONS) / size
    scale["hash_pct"] = 100 * _part_bytes(runs, HASH_GRID_SECTIONS) / size
    scale["size_bytes"] = size
    if {"image_width", "image_height"} <= set(runs.columns):
        scale["resolution"] = [
            "" if _is_missing(w) or _is_missing(h) else f"{int(w)}x{int(h)}"
            for w, h in zip(runs["image_width"], runs["image_height"])
        ]
    else:
        scale["resolution"] = ""
    scale["iterations"] = pd.to_numeric(runs["iterations"], errors="coerce") if "iterations" in runs else np.nan
    return scale


def _joined(values) -> str:
    distinct = sorted({str(v) for v in values if not _is_missing(v) and str(v) not in ("", "nan")})
    return ", ".join(distinct)


def scale_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run group (benchmark, scene, method, variant, lambda; training seeds together):
    ``SCALE_COLUMNS``."""
    if runs.empty:
        return pd.DataFrame(columns=SCALE_COLUMNS)
    runs = runs.copy()
    runs["variant"] = runs["variant"].fillna("default") if "variant" in runs else "default"
    scale = run_scale(runs)
    labels = method_labels(runs)
    rows = []
    keys = ["benchmark", "scene", "method", "variant", "lmbda"]
    for (benchmark, scene, method, variant, lmbda), group in runs.groupby(keys, sort=True, dropna=False):
        s = scale.loc[group.index]
        iterations = s["iterations"].dropna()
        rows.append({
            "Benchmark": benchmark,
            "Scene": scene,
            "Method": method_name(method, labels),
            "Variant": variant,
            "lambda": lmbda if lmbda else math.nan,
            "Seeds": int(group["seed"].nunique()) if "seed" in group else len(group),
            "Resolution": _joined(s["resolution"]),
            "Iterations": _joined(iterations.astype(int)) if len(iterations) else "",
            "Anchors": s["anchors"].mean(),
            "Anchors (min)": s["anchors"].min(),
            "Anchors (max)": s["anchors"].max(),
            "Networks [% of file]": s["networks_pct"].mean(),
            "Hash grids [% of file]": s["hash_pct"].mean(),
            "Size [KiB]": s["size_bytes"].mean() / 1024,
        })
    return pd.DataFrame(rows, columns=SCALE_COLUMNS)


def _count(value: float) -> str:
    if _is_missing(value):
        return "—"
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


def _range(values: pd.Series, fmt) -> str:
    values = values.dropna()
    if values.empty:
        return "—"
    low, high = values.min(), values.max()
    return fmt(low) if fmt(low) == fmt(high) else f"{fmt(low)}–{fmt(high)}"


def benchmark_footnotes(runs: pd.DataFrame, stand_ins: Mapping[str, str] | None = None) -> dict[str, str]:
    """benchmark -> one sentence on its scale: scenes and resolution, iterations, anchors at the end and the
    networks' share of a file over its runs, and the same for HAC at lambda 0.004 (the claims' default rate
    point) where it was run; ``stand_ins``: benchmark -> the paper benchmark it stands in for."""
    notes = {}
    if runs.empty:
        return notes
    scale = run_scale(runs)
    percent = lambda v: f"{v:.0f}%"  # noqa: E731
    for benchmark, group in runs.groupby("benchmark", sort=True):
        s = scale.loc[group.index]
        parts = []
        scenes = []
        for scene, scene_runs in group.groupby("scene", sort=True):
            resolution = _joined(s.loc[scene_runs.index, "resolution"])
            scenes.append(f"{scene} at {resolution}" if resolution else str(scene))
        parts.append(("scene " if len(scenes) == 1 else "scenes ") + ", ".join(scenes))
        iterations = s["iterations"].dropna()
        if len(iterations):
            parts.append(f"{_joined(iterations.astype(int))} iterations")
        anchored = group["method"] != "3dgs"
        anchors = _range(s.loc[anchored, "anchors"], _count)
        networks = _range(s.loc[anchored, "networks_pct"], percent)
        anchors, networks = f"anchors at the end {anchors}", f"networks {networks} of a file"
        method, lmbda = REFERENCE_POINT
        reference = group[(group["method"] == method) & np.isclose(group["lmbda"].astype(float), lmbda)]
        if len(reference):
            r = s.loc[reference.index]
            label = method_name(method, method_labels(group))
            anchors += f" ({label} at λ {lmbda:g}: {_count(r['anchors'].mean())})"
            if r["networks_pct"].notna().any():
                networks += f" ({label} at λ {lmbda:g}: {r['networks_pct'].mean():.0f}%)"
        parts += [anchors, networks]
        stands_for = (stand_ins or {}).get(benchmark)
        prefix = f"{benchmark} (standing in for {stands_for})" if stands_for else str(benchmark)
        notes[benchmark] = f"{prefix}: " + "; ".join(parts) + "."
    return notes


__all__ = ["SCALE_COLUMNS", "SCALE_DECIMALS", "benchmark_footnotes", "run_scale", "scale_table"]
