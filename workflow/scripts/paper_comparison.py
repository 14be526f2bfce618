"""Our numbers beside the published ones, with deltas (see aggregate.py)."""

from aggregate import logging_to, paper_comparison

sm = snakemake  # noqa: F821 - injected by Snakemake
with logging_to(sm.log[0]):
    paper_comparison(sm.input.runs, sm.params.paper_dir, sm.output.csv, sm.output.md)
