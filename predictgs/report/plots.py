"""Rate-distortion plots: quality vs size per benchmark, ours solid with a marker per rate point, the
published curves dashed beside them.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend switch), so this
works headless and does not disturb a caller's matplotlib state. Sizes are plotted in MiB (bytes / 2**20),
the unit the published "MB" values use. Each figure is written as PNG and PDF.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from predictgs.io import write_atomic
from predictgs.report.paper import DIRECT, paper_benchmark_of, published_curves
from predictgs.report.tables import MIB, benchmark_means, main_runs, method_labels, method_name

METRIC_LABELS = {
    "psnr": "PSNR [dB] ↑",
    "ssim": "SSIM ↑",
    "lpips": "LPIPS (VGG) ↓",
    "lpips_alex": "LPIPS (Alex) ↓",
}
METHOD_COLORS = {
    "scaffold": "tab:green",
    "hac": "tab:blue",
    "hacpp": "tab:purple",
    "predictgs": "tab:red",
    "3dgs": "tab:gray",
}
FORMATS = ("png", "pdf")


def plot_rd(
    means: pd.DataFrame,
    out_stem: str | Path,
    *,
    title: str = "",
    published: pd.DataFrame | None = None,
    metrics: Sequence[str] = ("psnr", "ssim", "lpips"),
    labels: Mapping[str, str] | None = None,
) -> list[Path]:
    """One panel per metric vs size; writes ``<out_stem>.png`` and ``.pdf`` and returns their paths.

    ``means``: one benchmark's rows with method, lmbda, size_bytes and the metrics (``benchmark_means``);
    ``labels``: printed method names (``tables.method_labels``; default: the method keys).
    ``published``: optional rows with method, size_mib and the metrics (``paper.published_curves``); only
    the methods that ``means`` also has are drawn. The size axis is logarithmic when sizes span more than
    a factor of 5 (e.g. Scaffold-GS beside the compressed methods)."""
    if published is not None:
        published = published[published["method"].isin(means["method"].unique())]
    sizes = list(means["size_bytes"] / MIB) + ([] if published is None else list(published["size_mib"]))
    wide_range = min(sizes) > 0 and max(sizes) / min(sizes) > 5
    figure = Figure(figsize=(4.2 * len(metrics), 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    for axis, metric in zip(axes, metrics):
        for method, curve in means.groupby("method", sort=False):
            if metric not in curve or curve[metric].isna().all():
                continue
            curve = curve.sort_values("size_bytes")
            axis.plot(
                curve["size_bytes"] / MIB,
                curve[metric],
                marker="o",
                linestyle="-",
                color=METHOD_COLORS.get(method),
                label=f"{method_name(method, labels)} (ours)",
            )
        if published is not None and not published.empty:
            for method, curve in published.groupby("method", sort=False):
                if metric not in curve or curve[metric].isna().all():
                    continue
                curve = curve.sort_values("size_mib")
                axis.plot(
                    curve["size_mib"],
                    curve[metric],
                    marker="s",
                    markerfacecolor="none",
                    linestyle="--",
                    color=METHOD_COLORS.get(method),
                    label=f"{method_name(method, labels)} (published)",
                )
        if wide_range:
            axis.set_xscale("log")
        axis.set_xlabel("Size [MiB]")
        axis.set_ylabel(METRIC_LABELS.get(metric, metric))
        axis.grid(True, alpha=0.3)
    axes[0].legend(fontsize="small")
    return _save(figure, title, out_stem)


def plot_all_rd(
    runs: pd.DataFrame, out_dir: str | Path, paper_dir: str | Path | None = None, *, defaults: Mapping
) -> list[Path]:
    """``rd_<benchmark>.png/.pdf`` for every benchmark in the runs (main configurations only: Predict-GS
    at ``defaults``, the paper's settings). With ``paper_dir``, the published curves of the matching paper
    benchmark are drawn too (real benchmarks only: a synthetic stand-in's absolute values are not
    comparable with the paper's)."""
    selected = main_runs(runs, defaults)
    labels = method_labels(selected)
    means = benchmark_means(selected)
    written = []
    for benchmark, group in means.groupby("benchmark", sort=True):
        paper_benchmark, kind = paper_benchmark_of(benchmark)
        published = None
        if paper_dir is not None and kind == DIRECT:
            published = published_curves(paper_benchmark, paper_dir)
        title = benchmark if paper_benchmark is None else f"{benchmark} ({paper_benchmark})"
        written += plot_rd(group, Path(out_dir) / f"rd_{benchmark}", title=title, published=published,
                           labels=labels)
    return written


def plot_sweep(
    table: pd.DataFrame,
    field: str,
    out_stem: str | Path,
    *,
    title: str = "",
    message: str | None = None,
) -> list[Path]:
    """A one-parameter sweep (``tables.sweep_table``: Fig. 6 residual dimension, Fig. 7 initial scale):
    PSNR and size against the swept value, one line per (benchmark, lambda); writes ``<out_stem>.png``
    and ``.pdf``. With ``message`` (e.g. why the sweep has no rows) the figure shows only that text."""
    figure = Figure(figsize=(8.4, 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2, squeeze=False)[0]
    if message is not None or table.empty:
        for axis in axes:
            axis.set_axis_off()
        axes[0].text(0.0, 0.5, message or "no runs", wrap=True, va="center")
    else:
        for (benchmark, lmbda), curve in table.groupby(["Benchmark", "lambda"], sort=True):
            curve = curve.sort_values(field)
            label = f"{benchmark}, λ={lmbda:g}"
            axes[0].plot(curve[field], curve["PSNR"], marker="o", label=label)
            axes[1].plot(curve[field], curve["Size [MiB]"], marker="o", label=label)
        for axis, ylabel in zip(axes, (METRIC_LABELS["psnr"], "Size [MiB] ↓")):
            axis.set_xlabel(field)
            axis.set_ylabel(ylabel)
            axis.grid(True, alpha=0.3)
        axes[0].legend(fontsize="small")
    return _save(figure, title, out_stem)


def _save(figure: Figure, title: str, out_stem: str | Path) -> list[Path]:
    """Write the figure as ``<out_stem>.png`` and ``.pdf`` (with ``title`` above it, if any), atomically."""
    if title:
        figure.suptitle(title)
    out_stem = Path(out_stem)
    paths = []
    for fmt in FORMATS:
        buffer = io.BytesIO()
        figure.savefig(buffer, format=fmt, dpi=150)
        paths.append(write_atomic(out_stem.with_suffix(f".{fmt}"), buffer.getvalue()))
    return paths
