"""One row per run: every field of the runs' summaries, flattened (predictgs.report.writer)."""

from predictgs.report.writer import logging_to, runs_table

sm = snakemake  # noqa: F821 - injected by Snakemake
with logging_to(sm.log[0]):
    runs_table(sm.input.runs, sm.output[0])
