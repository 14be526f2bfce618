"""PSNR and size against the swept value (Fig. 6 / Fig. 7), PNG and PDF (predictgs.report.writer)."""

from predictgs.report.writer import logging_to, sweep_plot

sm = snakemake  # noqa: F821 - injected by Snakemake
with logging_to(sm.log[0]):
    sweep_plot(sm.wildcards.sweep, sm.input[0], sm.output.png.removesuffix(".png"))
