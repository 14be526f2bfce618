# Aggregation of the main runs (every method x scene x lambda at the paper's settings):
#
#   <results_dir>/runs.csv                                  one row per run
#   <results_dir>/tables/<benchmark>/table1.csv|md          Tables 1/2: quality and size
#   <results_dir>/tables/<benchmark>/table3_bit_allocation.csv|md
#   <results_dir>/tables/<benchmark>/table5_efficiency.csv|md
#   <results_dir>/tables/<benchmark>/bdrate.csv|md          BD-rate / BD-PSNR vs the anchor
#   <results_dir>/tables/<benchmark>/survey/<method>/<Dataset>/<scene>.csv   3DGS.zip survey format
#   <results_dir>/plots/rd_<benchmark>.png|pdf              R-D curves
#   <results_dir>/tables_extended/..., plots_extended/...   the same with extended_methods (extended_tables)
#   <results_dir>/paper_comparison.csv|md                   ours beside the published numbers (the real
#                                                           benchmarks only; the claims: verdicts.smk)
#
# Rules that tell a Predict-GS variant from the main run get the paper's settings as params.defaults, from
# the method's configuration (PREDICTGS_DEFAULTS, common.smk): the report holds no copy of them.


rule runs_table:
    input:
        runs=main_runs(),
    output:
        report(f"{RESULTS}/runs.csv", caption="../report/runs.rst", category="Runs"),
    conda:
        ENV
    log:
        f"{RESULTS}/logs/runs_table.log",
    script:
        "../scripts/runs_table.py"


rule benchmark_tables:
    input:
        runs=lambda wc: main_runs(wc.benchmark, tableset=wc.tableset),
    output:
        table1=report(
            f"{TABLES}/table1.csv",
            caption="../report/table1.rst",
            category="Tables",
            subcategory="{tableset} {benchmark}",
        ),
        table1_md=f"{TABLES}/table1.md",
        table3_bit_allocation=report(
            f"{TABLES}/table3_bit_allocation.csv",
            caption="../report/table3.rst",
            category="Tables",
            subcategory="{tableset} {benchmark}",
        ),
        table3_bit_allocation_md=f"{TABLES}/table3_bit_allocation.md",
        table5_efficiency=report(
            f"{TABLES}/table5_efficiency.csv",
            caption="../report/table5.rst",
            category="Tables",
            subcategory="{tableset} {benchmark}",
        ),
        table5_efficiency_md=f"{TABLES}/table5_efficiency.md",
        survey=directory(f"{TABLES}/survey"),
    params:
        defaults=PREDICTGS_DEFAULTS,
    conda:
        ENV
    log:
        f"{RESULTS}/logs/{{tableset}}_{{benchmark}}.log",
    script:
        "../scripts/benchmark_tables.py"


rule bdrate_table:
    input:
        runs=lambda wc: main_runs(wc.benchmark, tableset=wc.tableset),
    output:
        csv=report(
            f"{TABLES}/bdrate.csv",
            caption="../report/bdrate.rst",
            category="BD-rate",
            subcategory="{tableset} {benchmark}",
        ),
        md=f"{TABLES}/bdrate.md",
    params:
        anchor=lambda wc: bdrate_pairs(wc.tableset)[0],
        methods=lambda wc: bdrate_pairs(wc.tableset)[1],
        interpolation=config["bdrate"].get("interpolation", "pchip"),
        defaults=PREDICTGS_DEFAULTS,
    conda:
        ENV
    log:
        f"{RESULTS}/logs/bdrate_{{tableset}}_{{benchmark}}.log",
    script:
        "../scripts/bdrate.py"


rule rd_plot:
    input:
        runs=lambda wc: main_runs(wc.benchmark, tableset="tables_extended" if wc.plots == "plots_extended" else "tables"),
        paper=PAPER_TABLES,
    output:
        png=report(
            f"{RESULTS}/{{plots}}/rd_{{benchmark}}.png",
            caption="../report/rd_curves.rst",
            category="R-D curves",
            subcategory="{plots} {benchmark}",
        ),
        pdf=f"{RESULTS}/{{plots}}/rd_{{benchmark}}.pdf",
    params:
        paper_dir=lambda wc, input: os.path.dirname(input.paper[0]) if input.paper else PAPER_DIR,
        defaults=PREDICTGS_DEFAULTS,
    conda:
        ENV
    log:
        f"{RESULTS}/logs/{{plots}}_rd_{{benchmark}}.log",
    script:
        "../scripts/rd_plot.py"


rule paper_comparison:
    input:
        runs=main_runs(),
        paper=PAPER_TABLES,
    output:
        csv=report(
            f"{RESULTS}/paper_comparison.csv",
            caption="../report/paper_comparison.rst",
            category="Paper comparison",
        ),
        md=f"{RESULTS}/paper_comparison.md",
    params:
        paper_dir=lambda wc, input: os.path.dirname(input.paper[0]) if input.paper else PAPER_DIR,
        defaults=PREDICTGS_DEFAULTS,
    conda:
        ENV
    log:
        f"{RESULTS}/logs/paper_comparison.log",
    script:
        "../scripts/paper_comparison.py"


rule rd_curves:
    input:
        expand(f"{RESULTS}/plots/rd_{{benchmark}}.{{ext}}", benchmark=config["benchmarks"], ext=["png", "pdf"]),


rule bdrate:
    input:
        expand(f"{TABLES}/bdrate.{{ext}}", tableset="tables", benchmark=config["benchmarks"], ext=["csv", "md"]),


rule extended_tables:
    """The main methods with extended_methods (e.g. HAC++, Predict-GS on HAC++, 3DGS): Tables 1, 3, 5,
    BD-rates against every configured anchor, R-D plots."""
    input:
        expand(
            f"{TABLES}/{{table}}.{{ext}}",
            tableset="tables_extended",
            benchmark=config["benchmarks"],
            table=["table1", "table3_bit_allocation", "table5_efficiency", "bdrate"],
            ext=["csv", "md"],
        ),
        expand(f"{TABLES}/survey", tableset="tables_extended", benchmark=config["benchmarks"]),
        expand(f"{RESULTS}/plots_extended/rd_{{benchmark}}.{{ext}}", benchmark=config["benchmarks"], ext=["png", "pdf"]),


rule compare_paper:
    input:
        f"{RESULTS}/paper_comparison.csv",
        f"{RESULTS}/paper_comparison.md",
