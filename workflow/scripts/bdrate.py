"""BD-rate / BD-PSNR against the anchor method on one benchmark; a note instead of a number when the
rate points do not allow it (predictgs.report.writer)."""

from predictgs.report.writer import logging_to, write_bdrate

sm = snakemake  # noqa: F821 - injected by Snakemake
with logging_to(sm.log[0]):
    write_bdrate(
        sm.input.runs, sm.wildcards.benchmark, sm.params.anchor, sm.params.methods, sm.params.interpolation,
        sm.output.csv, sm.output.md, defaults=dict(sm.params.defaults),
    )
