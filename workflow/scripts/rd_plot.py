"""R-D curves (PSNR, SSIM, LPIPS vs size) of one benchmark, PNG and PDF (predictgs.report.writer)."""

from pathlib import Path

from predictgs.report.writer import logging_to, rd_plot

sm = snakemake  # noqa: F821 - injected by Snakemake
with logging_to(sm.log[0]):
    written = rd_plot(sm.input.runs, sm.wildcards.benchmark, Path(sm.output.png).parent, sm.params.paper_dir,
                      defaults=dict(sm.params.defaults))
    missing = {str(p) for p in sm.output} - {str(p) for p in written}
    if missing:
        raise RuntimeError(f"R-D plot not written: {sorted(missing)}")
