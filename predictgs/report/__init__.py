"""Tables, rate-distortion plots, BD-rates and the comparison with the published numbers.

``build_report(runs, out_dir)`` regenerates everything from a folder of runs (each with a
``metrics.json``): the tables as CSV and Markdown, per-scene survey CSVs, R-D plots, and
``paper_comparison.csv`` (ours vs the numbers transcribed in ``results/paper/``).
"""

from __future__ import annotations

from pathlib import Path

from predictgs.report.bdrate import bd_psnr, bd_rate
from predictgs.report.paper import PAPER_DIR, compare_with_paper, published_curves, read_paper_table
from predictgs.report.plots import plot_all_rd, plot_rd, plot_sweep
from predictgs.report.tables import (
    bd_table,
    benchmark_means,
    bit_allocation_table,
    component_ablation_table,
    efficiency_table,
    load_runs,
    quality_table,
    schedule_table,
    sweep_table,
    to_markdown,
    write_survey_csvs,
    write_tables,
)

__all__ = [
    "PAPER_DIR",
    "bd_psnr",
    "bd_rate",
    "bd_table",
    "benchmark_means",
    "bit_allocation_table",
    "build_report",
    "compare_with_paper",
    "component_ablation_table",
    "efficiency_table",
    "load_runs",
    "plot_all_rd",
    "plot_rd",
    "plot_sweep",
    "published_curves",
    "quality_table",
    "read_paper_table",
    "schedule_table",
    "sweep_table",
    "to_markdown",
    "write_survey_csvs",
    "write_tables",
]


def build_report(runs_source, out_dir: str | Path, paper_dir: str | Path = PAPER_DIR) -> list[Path]:
    """Load the runs under ``runs_source`` and write tables, survey CSVs, plots and the paper comparison
    into ``out_dir``; returns the written paths."""
    out_dir = Path(out_dir)
    runs = load_runs(runs_source)
    written = write_tables(runs, out_dir)
    written += plot_all_rd(runs, out_dir / "plots", paper_dir)
    comparison = compare_with_paper(runs, paper_dir)
    comparison.to_csv(out_dir / "paper_comparison.csv", index=False, lineterminator="\n")
    (out_dir / "paper_comparison.md").write_text(to_markdown(comparison), encoding="utf-8")
    return written + [out_dir / "paper_comparison.csv", out_dir / "paper_comparison.md"]
