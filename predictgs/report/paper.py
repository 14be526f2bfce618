"""The published numbers (``results/paper/*.csv``) and the comparison of our results with them.

The CSVs are transcribed once from the Predict-GS paper (Tables 1-9) and from HAC's / HAC++'s published
per-rate-point results; ``results/paper/README.md`` lists them, their columns and the transcription notes.
Every file has a ``source`` column; sizes are in the ``size`` column with the unit as printed in
``size_unit``. The HAC lineage (HAC, HAC++, Predict-GS) prints "MB" for bytes / 2**20, so sizes whose unit
is "MB..." or "MiB" are read as MiB when compared with ours.

Benchmarks: our names map to the paper's (``PAPER_BENCHMARKS``); only those are compared with the
published absolute numbers ("direct"). The synthetic stand-ins map to the paper benchmark they imitate
(``STAND_INS``) for the claims (``report.claims``), which compare relations between methods measured on our
runs with the same relations in the paper; their absolute values are never put beside the paper's.

Sizes. The published sizes are the reference code's accounting (HAC: 48 bits per anchor position, fp32
networks, ...), not the size of a file like ours (Morton-coded positions, deflated networks: a few percent
smaller for the same model). The comparison therefore puts the published size beside our run's
``reference_size_bytes`` (the same accounting of our model) and says so in ``accounting``; a run without it
(an older metrics.json) is compared by its file size, and the row says that instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from predictgs.errors import ReportError
from predictgs.report.tables import MIB, REFERENCE_SIZE, benchmark_means, main_runs

PAPER_DIR = Path(__file__).resolve().parents[2] / "results" / "paper"

PAPER_BENCHMARKS = {
    "mipnerf360": "Mip-NeRF360",
    "tandt": "Tanks&Temples",
    "db": "Deep Blending",
    "synthetic": "NeRF-Synthetic",
}
STAND_INS = {
    "synth_outdoor": "Mip-NeRF360",
    "synth_object": "Tanks&Temples",
    "synth_indoor": "Deep Blending",
}
DIRECT = "direct"
STAND_IN = "stand-in"
MEAN_SCENE = "(mean)"

# Reference files in order of precedence: when two files give the same point (HAC at lambda 0.004 is
# in hac_per_lambda.csv with 3 decimals and in Table 1 with 2), the first one wins.
REFERENCE_FILES = (
    "hac_per_lambda",
    "table1_mipnerf360",
    "table1_tandt",
    "table2_deepblending",
    "hacpp",
    "table7_mipnerf360_per_scene",
    "table8_tandt_per_scene",
    "table9_deepblending_per_scene",
)
METRIC_UNITS = {"psnr": "dB", "ssim": "", "lpips": "", "size": "MiB (paper prints MB)"}
REFERENCE_ACCOUNTING = "reference code's accounting"
FILE_SIZE = "our file (no reference accounting recorded)"


def read_paper_table(name: str, paper_dir: str | Path = PAPER_DIR) -> pd.DataFrame:
    """One transcribed table, e.g. ``read_paper_table("table1_mipnerf360")``."""
    path = Path(paper_dir) / f"{name}.csv"
    if not path.is_file():
        raise ReportError(f"published table {path} not found")
    return pd.read_csv(path)


def size_in_mib(size: pd.Series, unit: pd.Series) -> pd.Series:
    """Sizes as printed -> MiB. "MB" in these tables means MiB (HAC's convention); other units are errors."""
    as_mib = unit.astype(str).str.startswith(("MB", "MiB"))
    if not as_mib.all():
        raise ReportError(f"unknown size unit(s) {sorted(set(unit[~as_mib]))}")
    return size.astype(float)


def reference_points(paper_dir: str | Path = PAPER_DIR) -> pd.DataFrame:
    """All published points we can compare with: paper_benchmark, method (our key), lmbda, rate, scene
    (``MEAN_SCENE`` for dataset means), psnr, ssim, lpips, size_mib, source."""
    frames = []
    for name in REFERENCE_FILES:
        table = read_paper_table(name, paper_dir)
        table = table[table["our_method"].notna()]
        if "our_scene" in table:
            table = table[table["our_scene"].notna()].assign(scene=lambda t: t["our_scene"])
        else:
            table = table.assign(scene=MEAN_SCENE)
        frames.append(
            pd.DataFrame(
                {
                    "paper_benchmark": table["benchmark"],
                    "method": table["our_method"],
                    "lmbda": table["lmbda"].astype(float),
                    "rate": table["rate"] if "rate" in table else "",
                    "scene": table["scene"],
                    "psnr": table["psnr"],
                    "ssim": table["ssim"],
                    "lpips": table["lpips"],
                    "size_mib": size_in_mib(table["size"], table["size_unit"]),
                    "source": table["source"],
                }
            )
        )
    points = pd.concat(frames, ignore_index=True)
    points["rate"] = points["rate"].fillna("")
    # drop_duplicates treats missing lambdas as equal, so HAC++'s and Scaffold-GS's points dedupe too.
    unique = points.drop_duplicates(["paper_benchmark", "method", "lmbda", "rate", "scene"])
    return unique.reset_index(drop=True)


def published_curves(paper_benchmark: str, paper_dir: str | Path = PAPER_DIR) -> pd.DataFrame:
    """Dataset-mean published points of one benchmark, for drawing beside ours (sorted by size)."""
    points = reference_points(paper_dir)
    points = points[(points["paper_benchmark"] == paper_benchmark) & (points["scene"] == MEAN_SCENE)]
    return points.sort_values(["method", "size_mib"], kind="stable").reset_index(drop=True)


def paper_benchmark_of(benchmark: str, stand_ins: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """(paper benchmark name, comparison kind) for one of our benchmark names; (None, "") if unmapped.
    ``stand_ins``: more stand-ins, our benchmark -> the paper benchmark's name (a workflow configuration's
    ``stands_in_for``, e.g. real photographs standing in for Mip-NeRF360), besides ``STAND_INS``."""
    if benchmark in PAPER_BENCHMARKS:
        return PAPER_BENCHMARKS[benchmark], DIRECT
    stand_ins = {**STAND_INS, **(stand_ins or {})}
    if benchmark in stand_ins:
        return stand_ins[benchmark], STAND_IN
    return None, ""


def benchmarks_standing_for(paper_benchmark: str, benchmarks, stand_ins: Mapping[str, str] | None = None) -> list[str]:
    """Those of ``benchmarks`` (our names) that are ``paper_benchmark`` or stand in for it."""
    return [b for b in benchmarks if paper_benchmark_of(b, stand_ins)[0] == paper_benchmark]


def compare_with_paper(ours: pd.DataFrame, paper_dir: str | Path = PAPER_DIR, *, defaults: Mapping) -> pd.DataFrame:
    """Ours vs published, one row per (benchmark, method, lambda, scene, metric), long format.

    ``ours`` is the run table of ``load_runs`` (one row per scene and rate point). Only our benchmarks that
    are the paper's (``PAPER_BENCHMARKS``) are compared: dataset means (scene ``"(mean)"``) and single
    scenes (the paper's Tables 7-9). A synthetic stand-in gives no rows: its absolute numbers are not
    comparable with the paper's (its claims are tested as relations, ``report.claims``). A published point
    without lambda (Scaffold-GS, 3DGS)
    matches our runs of that method at any lambda when it is the method's only point on that benchmark.
    Columns: benchmark, paper_benchmark, comparison, method, lmbda, scene, metric, unit, ours, paper,
    delta (= ours - paper), delta_percent, accounting (size rows: which size of ours, see the module
    docstring), source."""
    reference = reference_points(paper_dir)
    selected = main_runs(ours, defaults)
    ours_means = benchmark_means(selected).assign(scene=MEAN_SCENE)
    rows = []
    for candidates in (ours_means, selected):
        for _, run in candidates.iterrows():
            paper_benchmark, kind = paper_benchmark_of(run["benchmark"])
            if kind != DIRECT:
                continue
            match = _matching_point(reference, paper_benchmark, run["method"], run["lmbda"], run["scene"])
            if match is None:
                continue
            for metric in METRIC_UNITS:
                accounting = ""
                if metric == "size":
                    mine, accounting = our_size_mib(run)
                else:
                    mine = run.get(metric, np.nan)
                published = match["size_mib"] if metric == "size" else match[metric]
                if pd.isna(mine) or pd.isna(published):
                    continue
                rows.append(
                    {
                        "benchmark": run["benchmark"],
                        "paper_benchmark": paper_benchmark,
                        "comparison": kind,
                        "method": run["method"],
                        "lmbda": run["lmbda"],
                        "scene": run["scene"],
                        "metric": metric,
                        "unit": METRIC_UNITS[metric],
                        "ours": float(mine),
                        "paper": float(published),
                        "delta": float(mine) - float(published),
                        "delta_percent": 100 * (float(mine) - float(published)) / float(published),
                        "accounting": accounting,
                        "source": match["source"],
                    }
                )
    columns = [
        "benchmark",
        "paper_benchmark",
        "comparison",
        "method",
        "lmbda",
        "scene",
        "metric",
        "unit",
        "ours",
        "paper",
        "delta",
        "delta_percent",
        "accounting",
        "source",
    ]
    return pd.DataFrame(rows, columns=columns)


def our_size_mib(run: pd.Series) -> tuple[float, str]:
    """(size in MiB, which size) of one run or dataset mean to put beside a published size: the reference
    code's accounting of our model when recorded, else our file's size."""
    reference = run.get(REFERENCE_SIZE, np.nan)
    if not pd.isna(reference):
        return float(reference) / MIB, REFERENCE_ACCOUNTING
    return float(run["size_bytes"]) / MIB, FILE_SIZE


def _matching_point(reference: pd.DataFrame, paper_benchmark: str, method: str, lmbda: float, scene: str):
    candidates = reference[
        (reference["paper_benchmark"] == paper_benchmark)
        & (reference["method"] == method)
        & (reference["scene"] == scene)
    ]
    same_lambda = candidates[np.isclose(candidates["lmbda"].astype(float), lmbda, rtol=1e-9, atol=0)]
    if len(same_lambda):
        return same_lambda.iloc[0]
    if len(candidates) == 1 and pd.isna(candidates["lmbda"].iloc[0]):
        return candidates.iloc[0]
    return None
