"""The report writer: run summaries in, tables (CSV + Markdown), plots and verdicts out.

Each function takes paths and writes files; the workflow's scripts (``workflow/scripts/*.py``) are thin
adapters that pass Snakemake's inputs, outputs and params to them, and the tests call them directly. The
numbers come from the modules beside this one (``tables``, ``bdrate``, ``plots``, ``paper``,
``claims``); this module selects runs, names files and explains the tables. Every file goes through
``predictgs.io.write_atomic`` (a reader never sees half of one).

The paper's Predict-GS settings (``defaults``: residual dimension, schedule, initial scale) are an
argument of every function that tells a variant from the main run: the workflow passes the method's own
(``predictgs.methods.predict_gs.paper_settings()``); nothing here repeats them.

A table the runs cannot support (``ReportError``: e.g. a bit allocation without entropy-model estimates)
is written as a one-column ``note`` CSV and a Markdown file saying why, so that one missing table never
stops the other outputs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from predictgs.errors import ReportError
from predictgs.io import write_atomic
from predictgs.report.claims import (
    CLAIMS_FILE,
    INSUFFICIENT,
    MIN_SEEDS,
    evaluate_claims,
    load_claims,
    verdict_counts,
)
from predictgs.report.paper import DIRECT, STAND_IN, STAND_INS, compare_with_paper, paper_benchmark_of
from predictgs.report.plots import plot_all_rd, plot_sweep
from predictgs.report.scale import SCALE_DECIMALS, benchmark_footnotes, scale_table
from predictgs.report.tables import (
    bd_table,
    bit_allocation_table,
    component_ablation_table,
    efficiency_table,
    load_runs,
    quality_table,
    schedule_table,
    sweep_table,
    to_latex,
    to_markdown,
    write_survey_csvs,
)

NOTE = "note"
SIZE_NOTE = "Size [MiB] = bytes / 2^20 (what the HAC / Predict-GS tables print as \"MB\")."
REFERENCE_NOTE = (
    "Size [MiB]: our file (.pgs; 3DGS: its PLY), the size we report. Ref. size [MiB]: the reference code's "
    "accounting of the same model, what the published numbers count (HAC and Predict-GS: 48 bits per anchor "
    "position, networks at 32 bits per parameter, entropy-coded streams, hash grids and masks as one "
    "Bernoulli each; HAC++: its own, with our position coder's bits where it uses G-PCC; Scaffold-GS: its "
    "PLY and MLPs; each run's rule: metrics.json reference_accounting; docs/methods.md, \"Two sizes\")."
)
QUALITY_NOTE = (
    "PSNR, SSIM and LPIPS (VGG, 3DGS convention) on the test views, of the decoded model when the run "
    "was encoded; dataset values are plain means over scenes."
)

TITLES = {
    "table1": "Table 1/2 — {benchmark}: quality and size per method and rate point",
    "table3_bit_allocation": "Table 3 — {benchmark}: bit allocation (Feature vs Others) and BSF",
    "table5_efficiency": "Table 5 — {benchmark}: size, training / encoding / decoding time, rendering speed",
    "bdrate": "BD-rate — {benchmark}: size saving at equal PSNR (Bjøntegaard)",
}
NOTES = {
    "table1": [QUALITY_NOTE, SIZE_NOTE, REFERENCE_NOTE,
               "Rate: HAC's and Predict-GS's named rate points (high / low)."],
    "table3_bit_allocation": [
        "Feature: the anchor features (HAC: f; Predict-GS: Spatial Feature Pool + residual f_r); Others: "
        "everything else (anchor positions, scaling, offsets, hash grid, masks, MLPs), in the reference "
        "code's accounting per category (for HAC, HAC++ and Predict-GS the entropy model's bit estimates), "
        "as in the paper, which measured it with HAC's official code; Total: that accounting's size; Size: "
        "our file.",
        "BSF: (Feature - Feature of HAC at the same lambda) / Feature of HAC.",
        SIZE_NOTE,
    ],
    "table5_efficiency": [
        "Train time: the training loop's own clock; encode / decode: `predictgs encode`; FPS: the decoded "
        "model at test resolution on the device named (Device).",
        SIZE_NOTE,
        REFERENCE_NOTE,
    ],
    "bdrate": [
        "Negative BD-rate: the method needs fewer bytes than the anchor at equal PSNR; positive BD-PSNR: "
        "higher PSNR at equal size. Computed on the dataset means of each rate point, with our files' sizes.",
        "PSNR overlap: the PSNR interval both curves cover (BD-rate's average is over it) as a percentage of "
        "each curve's PSNR range; below 75% the value comes with a warning, below 50% the verdicts do not "
        "decide a claim on it.",
    ],
}
ABLATION_TITLES = {
    "components": "Table 4 — component ablation (SFP, residual f_r, progressive training)",
    "schedule": "Table 6 — downsampling schedule of the progressive training",
    "residual_dim": "Fig. 6 — dimension of the residual f_r",
    "ds_init": "Fig. 7 — initial downsampling scale",
}
ABLATION_BUILDERS: dict[str, Callable[..., pd.DataFrame]] = {
    "components": lambda runs, defaults: component_ablation_table(runs, defaults=defaults),
    "schedule": lambda runs, defaults: schedule_table(runs, defaults=defaults),
    "residual_dim": lambda runs, defaults: sweep_table(runs, "residual_dim", defaults=defaults),
    "ds_init": lambda runs, defaults: sweep_table(runs, "ds_init", defaults=defaults),
}


# ---------------------------------------------------------------------------------------------------
# Helpers


@contextmanager
def logging_to(log_path):
    """Send stderr (and so warnings) of a Snakemake script to its log file (a stream, written as it goes)."""
    if log_path is None:
        yield
        return
    with open(log_path, "w", encoding="utf-8") as log:
        previous, sys.stderr = sys.stderr, log
        try:
            yield
        finally:
            sys.stderr = previous


def load(paths: Iterable[str | Path]) -> pd.DataFrame:
    paths = [Path(p) for p in paths]
    if not paths:
        raise ReportError("no runs given")
    return load_runs(paths)


def note_table(reason: str) -> pd.DataFrame:
    return pd.DataFrame({NOTE: [reason]})


def is_note(table: pd.DataFrame) -> bool:
    return list(table.columns) == [NOTE]


def build(builder: Callable[[], pd.DataFrame | None]) -> pd.DataFrame | None:
    """The table, or a note saying why it cannot be built (None when the builder gives None)."""
    try:
        table = builder()
    except ReportError as error:
        print(f"table not built: {error}", file=sys.stderr)
        return note_table(f"not available: {error}")
    if table is None:
        return None
    if table.empty:
        return note_table("not available: no rows")
    return table


def write_csv(table: pd.DataFrame, path) -> Path:
    return write_atomic(path, table.to_csv(index=False, lineterminator="\n"))


def write_table(table: pd.DataFrame, csv_path, md_path, title: str, notes: Iterable[str] = ()) -> None:
    """``table`` as CSV, as Markdown under ``title`` with ``notes`` below it (a note table: its reason),
    and as a LaTeX booktabs tabular beside the Markdown (``.tex``, same numbers, title and notes as
    comments)."""
    write_csv(table, csv_path)
    write_atomic(Path(md_path).with_suffix(".tex"), to_latex(table, title, [*notes]))
    if is_note(table):
        body = f"_{table[NOTE].iloc[0]}_\n"
    else:
        body = to_markdown(table)
        estimated = table.get("Scenes w/ estimated size")
        if estimated is not None and (estimated > 0).any():
            notes = [*notes, "Some sizes are the entropy model's estimates (runs not encoded): see the column."]
    lines = [f"# {title}", "", body.rstrip("\n"), ""]
    lines += [f"- {note}" for note in notes]
    write_atomic(md_path, "\n".join(lines).rstrip("\n") + "\n")


# ---------------------------------------------------------------------------------------------------
# Per benchmark


def benchmark_tables(
    summaries: Iterable[str | Path], benchmark: str, outputs: Mapping[str, str | Path], *, defaults: Mapping
) -> None:
    """Tables 1/2, 3 and 5 of one benchmark and its per-scene survey files.

    ``outputs``: table1, table1_md, table3_bit_allocation, table3_bit_allocation_md, table5_efficiency,
    table5_efficiency_md, survey (a folder: <method>/<Dataset>/<scene>.csv)."""
    runs = load(summaries)
    runs = runs[runs["benchmark"] == benchmark]
    builders = {
        "table1": lambda: quality_table(runs, benchmark, defaults=defaults),
        "table3_bit_allocation": lambda: bit_allocation_table(runs, defaults=defaults),
        "table5_efficiency": lambda: efficiency_table(runs, defaults=defaults),
    }
    for name, builder in builders.items():
        write_table(
            build(builder), outputs[name], outputs[f"{name}_md"], TITLES[name].format(benchmark=benchmark),
            NOTES[name],
        )
    survey = Path(outputs["survey"])
    survey.mkdir(parents=True, exist_ok=True)
    if not runs.empty:
        write_survey_csvs(runs, survey, defaults=defaults)


def write_bdrate(
    summaries, benchmark, anchor, methods, interpolation, csv_path, md_path, *, defaults: Mapping
) -> pd.DataFrame:
    """``bd_table`` of one benchmark as CSV and Markdown, with a hint when a value could not be computed."""
    runs = load(summaries)
    table = bd_table(runs, benchmark, anchor, list(methods), interpolation, defaults=defaults)
    notes = list(NOTES["bdrate"])
    if table["Note"].str.startswith("not computed").any():
        notes.append(
            f"BD-rate needs, per curve, at least {2 if interpolation == 'pchip' else 4} rate points and PSNR "
            "ranges that overlap: add lambdas to the methods (config: methods.<method>.lambdas)."
        )
    write_table(table, csv_path, md_path, TITLES["bdrate"].format(benchmark=benchmark), notes)
    return table


def rd_plot(summaries, benchmark, out_dir, paper_dir=None, *, defaults: Mapping) -> list[Path]:
    """``<out_dir>/rd_<benchmark>.png`` and ``.pdf``: every method's rate points (and the published
    curves of a real benchmark)."""
    runs = load(summaries)
    return plot_all_rd(runs[runs["benchmark"] == benchmark], out_dir, paper_dir, defaults=defaults)


# ---------------------------------------------------------------------------------------------------
# All benchmarks


def runs_table(summaries, csv_path) -> pd.DataFrame:
    """One row per run (the flattened summaries), sorted."""
    runs = load(summaries)
    order = [c for c in ("benchmark", "method", "lmbda", "scene", "seed") if c in runs]
    runs = runs.sort_values(order, kind="stable").reset_index(drop=True)
    write_csv(runs, csv_path)
    return runs


def paper_comparison(summaries, paper_dir, csv_path, md_path, *, defaults: Mapping) -> pd.DataFrame:
    """Our numbers beside the published ones where the benchmark is the paper's; on a synthetic stand-in
    a note pointing to the verdicts (its absolute numbers are not comparable with the paper's)."""
    runs = load(summaries)
    table = build(lambda: compare_with_paper(runs, paper_dir, defaults=defaults) if _direct(runs) else None)
    if table is None:
        table = note_table(
            "not available: none of these benchmarks is one of the paper's (a synthetic stand-in's absolute "
            "numbers are not comparable with the paper's); the paper's claims are tested as relations between "
            "methods in verdicts.md"
        )
    notes = [
        "delta = ours - paper; sizes in MiB (the papers' \"MB\" are bytes / 2^20).",
        "Sizes: the published numbers are the reference code's accounting (HAC: 48 bits per anchor position, "
        "networks at 32 bits per parameter, ...), so ours are the same accounting of our model "
        "(reference_size_bytes), not our file, which is a few percent smaller (`accounting` says which size "
        "each row uses; HAC++: with our position coder's bits, the reference uses G-PCC).",
        "Only benchmarks that are the paper's own (config/paper.yaml) are compared; the relations between "
        "methods that the paper claims are tested on every benchmark in verdicts.md.",
        "Published numbers: results/paper/ (each row names its source).",
    ]
    write_table(table, csv_path, md_path, "Our results beside the published numbers", notes)
    return table


def _direct(runs: pd.DataFrame) -> bool:
    """Whether any run is on one of the paper's own benchmarks (not a stand-in)."""
    return any(paper_benchmark_of(b)[1] == DIRECT for b in runs["benchmark"].unique())


# ---------------------------------------------------------------------------------------------------
# Ablations


def ablation_table(kind: str, summaries, csv_path, md_path, *, defaults: Mapping) -> pd.DataFrame:
    if kind not in ABLATION_BUILDERS:
        raise ReportError(f"unknown ablation {kind!r}; choose one of {', '.join(ABLATION_BUILDERS)}")
    runs = load(summaries)
    table = build(lambda: ABLATION_BUILDERS[kind](runs, defaults))
    write_table(table, csv_path, md_path, ABLATION_TITLES[kind], [QUALITY_NOTE, SIZE_NOTE, REFERENCE_NOTE])
    return table


def sweep_plot(field: str, table_csv, out_stem) -> list[Path]:
    table = pd.read_csv(table_csv)
    message = table[NOTE].iloc[0] if is_note(table) else None
    return plot_sweep(table, field, out_stem, title=ABLATION_TITLES.get(field, field), message=message)


# ---------------------------------------------------------------------------------------------------
# Claims and verdicts


VERDICT_MD_COLUMNS = {
    "statement": "Claim",
    "benchmark": "Benchmark",
    "relation": "Relation",
    "paper": "Paper",
    "ours": "Ours: mean [spread] (seeds)",
    "verdict": "Verdict",
    "reason": "Why",
}


def write_verdicts(
    summaries,
    claims_path=CLAIMS_FILE,
    csv_path="verdicts.csv",
    md_path="verdicts.md",
    per_seed_path="verdicts_per_seed.csv",
    *,
    defaults: Mapping,
    seeds: Iterable[int] | None = None,
    target: str = "",
    stand_ins: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Test every claim of ``claims_path`` on the runs: ``verdicts.csv`` (one row per claim and benchmark),
    ``verdicts.md`` (the same, to read first, with the scale of the runs in footnotes) and the per-seed
    values behind them. Missing runs or a single seed give "insufficient data" rows, never an error; an
    unreadable claims file is an error. ``stand_ins``: our benchmark -> the paper benchmark it stands in
    for (the workflow configuration's ``stands_in_for``), besides the synthetic ones."""
    claims = load_claims(claims_path, settings=defaults)
    summaries = [Path(p) for p in summaries]
    runs = load_runs(summaries) if summaries else pd.DataFrame(columns=["method", "benchmark", "scene", "lmbda"])
    seeds = None if seeds is None else sorted(int(s) for s in seeds)
    verdicts, per_seed = evaluate_claims(runs, claims, defaults=defaults, seeds=seeds, stand_ins=stand_ins)
    write_csv(verdicts, csv_path)
    write_csv(per_seed, per_seed_path)
    write_atomic(md_path, verdicts_markdown(verdicts, runs, seeds=seeds, target=target, claims_path=claims_path,
                                            stand_ins=stand_ins))
    return verdicts


def verdicts_markdown(verdicts: pd.DataFrame, runs: pd.DataFrame, *, seeds=None, target: str = "",
                      claims_path=CLAIMS_FILE, stand_ins: Mapping[str, str] | None = None) -> str:
    counts = verdict_counts(verdicts)
    seed_text = ", ".join(map(str, seeds)) if seeds else "as present in the runs"
    benchmarks = sorted(runs["benchmark"].unique()) if len(runs) else []
    standing = {b: paper_benchmark_of(b, stand_ins)[0] for b in benchmarks
                if paper_benchmark_of(b, stand_ins)[1] == STAND_IN}
    footnotes = benchmark_footnotes(runs, standing) if len(runs) else {}
    lines = [
        "# Verdicts: the paper's claims tested on our runs",
        "",
        f"Runs of {'target `' + target + '`, ' if target else ''}training seeds {seed_text}; claims: "
        f"`{Path(claims_path).name}` ({len(verdicts)} rows: "
        + ", ".join(f"{n} {name}" for name, n in counts.items()) + ").",
        "",
    ]
    if any(b in STAND_INS for b in benchmarks):
        lines += [
            "**Embedded benchmark: these verdicts speak about the embedded scale only** (synthetic scenes that "
            "stand in for the paper's datasets, short training runs): whether the relations the paper reports "
            "appear there, not whether they hold on Mip-NeRF360, Tanks&Temples or Deep Blending.",
            "",
        ]
    others = {b: p for b, p in standing.items() if b not in STAND_INS}
    if others:
        lines += [
            "**Stand-ins: these verdicts speak about the scale of these runs only** ("
            + ", ".join(f"{b} stands in for {p}" for b, p in others.items())
            + "): whether the relations the paper reports appear on these scenes at this scale, not whether they "
            "hold on the paper's datasets.",
            "",
        ]
    if footnotes:
        lines += [
            "The scale of each benchmark's runs (scenes, resolution, iterations, anchors at the end, the "
            "networks' share of a file) is in its footnote, and per run in \"Scale of the runs\" below.",
            "",
        ]
    if (seeds is not None and len(seeds) < MIN_SEEDS) or counts[INSUFFICIENT] == len(verdicts):
        lines += [
            "With one training seed no claim can be decided (there is no spread): run the target `verdicts` "
            "(`make verdicts`), which repeats the runs over three seeds.",
            "",
        ]
    table = verdicts[list(VERDICT_MD_COLUMNS)].rename(columns=VERDICT_MD_COLUMNS)
    table["Verdict"] = [f"**{v}**" for v in table["Verdict"]]
    table["Benchmark"] = [f"{b} [^{b}]" if b in footnotes else b for b in table["Benchmark"]]
    lines += [to_markdown(table).rstrip("\n"), ""]
    lines += [
        "How to read it:",
        "",
        "- Each row is one claim of the paper on one of our benchmarks, measured as the same relation on our "
        "runs (a BD-rate, a ratio, a difference or an ordering between methods or settings), once per training "
        "seed: mean, then [min, max] over the seeds (a bootstrap 90% interval from 4 seeds on).",
        "- **holds**: the whole spread is on the claimed side of \"no effect\" (0, or 1 for a ratio); "
        "**does not hold**: it is on the other side, or it contains no effect but not the paper's value; "
        "**inconclusive**: it contains both no effect and the paper's value; **insufficient data**: fewer "
        "than 2 seeds, or runs missing (named).",
        "- An ordering holds when each adjacent pair holds; its value is the number of seeds in which the whole "
        "ordering holds, followed by each pair's difference.",
        "- A BD-rate is an average over the PSNR interval both curves cover: when, in a seed, that interval is "
        "less than 50% of a curve's PSNR range, the verdict is **inconclusive** whatever the values; below 75% "
        "the reason warns (the overlap per seed: verdicts_per_seed.csv).",
        "- Sources, the relations' definitions and the per-seed values: verdicts.csv and "
        "verdicts_per_seed.csv beside this file; docs/claims.md.",
    ]
    if len(runs):
        lines += [
            "",
            "## Scale of the runs",
            "",
            "One row per run over its training seeds: image size, iterations, anchors at the end (3DGS: "
            "Gaussians; mean, min and max over the seeds), and the share of the file (the size the tables "
            "report) taken by the networks (every MLP's weights) and by the hash grids (HAC's context grid, "
            "Predict-GS's Spatial Feature Pool); estimates where a run was not encoded.",
            "",
            to_markdown(scale_table(runs), SCALE_DECIMALS).rstrip("\n"),
        ]
    if footnotes:
        lines += ["", *(f"[^{b}]: {text}" for b, text in footnotes.items())]
    return "\n".join(lines) + "\n"


__all__ = [
    "ablation_table",
    "benchmark_tables",
    "build",
    "is_note",
    "logging_to",
    "note_table",
    "paper_comparison",
    "rd_plot",
    "runs_table",
    "sweep_plot",
    "verdicts_markdown",
    "write_bdrate",
    "write_table",
    "write_verdicts",
]
