"""Tables 1/2, 3 and 5 and the per-scene survey files of one benchmark (predictgs.report.writer)."""

from predictgs.report.writer import benchmark_tables, logging_to

sm = snakemake  # noqa: F821 - injected by Snakemake
with logging_to(sm.log[0]):
    benchmark_tables(
        sm.input.runs, sm.wildcards.benchmark, dict(sm.output.items()), defaults=dict(sm.params.defaults)
    )
