"""Tables, rate-distortion plots, BD-rates, the comparison with the published numbers, and the paper's
claims tested on our runs.

- ``tables``: loading run summaries (``load_runs``) and building the paper's tables from them;
- ``bdrate``: Bjøntegaard deltas; ``plots``: R-D curves and sweeps; ``paper``: the published numbers;
- ``claims``: the claims file (``results/paper/claims.yaml``), the relations and the verdicts;
- ``writer``: the one report writer, files in and files out, which the workflow's scripts call.

The paper's Predict-GS settings are never written here: functions that need them take ``defaults``, which
the workflow takes from the method's configuration (``predictgs.methods.predict_gs.paper_settings()``).
"""

from __future__ import annotations

from predictgs.report.bdrate import Overlap, bd_psnr, bd_psnr_overlap, bd_rate, bd_rate_overlap
from predictgs.report.claims import evaluate_claims, load_claims, verdict
from predictgs.report.paper import PAPER_DIR, compare_with_paper, published_curves, read_paper_table
from predictgs.report.plots import plot_all_rd, plot_rd, plot_sweep
from predictgs.report.tables import (
    bd_table,
    benchmark_means,
    bit_allocation_table,
    component_ablation_table,
    efficiency_table,
    load_runs,
    method_labels,
    quality_table,
    schedule_table,
    sweep_table,
    to_markdown,
    write_survey_csvs,
)

__all__ = [
    "Overlap",
    "PAPER_DIR",
    "bd_psnr",
    "bd_psnr_overlap",
    "bd_rate",
    "bd_rate_overlap",
    "bd_table",
    "benchmark_means",
    "bit_allocation_table",
    "compare_with_paper",
    "component_ablation_table",
    "efficiency_table",
    "evaluate_claims",
    "load_claims",
    "load_runs",
    "method_labels",
    "plot_all_rd",
    "plot_rd",
    "plot_sweep",
    "published_curves",
    "quality_table",
    "read_paper_table",
    "schedule_table",
    "sweep_table",
    "to_markdown",
    "verdict",
    "write_survey_csvs",
]
