"""Our numbers beside the published ones, with deltas, where the benchmark is the paper's
(predictgs.report.writer)."""

from predictgs.report.writer import logging_to, paper_comparison

sm = snakemake  # noqa: F821 - injected by Snakemake
with logging_to(sm.log[0]):
    paper_comparison(
        sm.input.runs, sm.params.paper_dir, sm.output.csv, sm.output.md, defaults=dict(sm.params.defaults)
    )
