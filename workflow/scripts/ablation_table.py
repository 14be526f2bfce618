"""One ablation table: Table 4 (components), Table 6 (schedule), Fig. 6 / 7 sweeps (predictgs.report.writer)."""

from predictgs.report.writer import ablation_table, logging_to

sm = snakemake  # noqa: F821 - injected by Snakemake
with logging_to(sm.log[0]):
    ablation_table(
        sm.wildcards.ablation, sm.input.runs, sm.output.csv, sm.output.md, defaults=dict(sm.params.defaults)
    )
