"""The paper's claims tested on the runs: verdicts.csv, verdicts.md and the per-seed values
(predictgs.report.claims; the paper's defaults come from the method's configuration)."""

from predictgs.report.writer import logging_to, write_verdicts

sm = snakemake  # noqa: F821 - injected by Snakemake
with logging_to(sm.log[0]):
    write_verdicts(
        sm.input.runs, sm.input.claims, sm.output.csv, sm.output.md, sm.output.per_seed,
        defaults=dict(sm.params.defaults), seeds=list(sm.params.seeds), target=sm.params.target,
        stand_ins=dict(sm.params.stand_ins),
    )
