# predictgs workflow: trains, encodes, decodes and evaluates every method x scene x rate point, then
# writes the paper's tables, R-D curves, BD-rates and the comparison with the published numbers.
#
#   snakemake --cores all reproduce_tables        # the embedded synthetic benchmark (`make reproduce`)
#   snakemake --cores all ablations               # Table 4, Table 6, Fig. 6 and Fig. 7 grids
#   snakemake --cores all verdicts                # the paper's claims tested on 3 training seeds
#   snakemake --configfile config/paper.yaml --config data_dir=/datasets ... all
#   snakemake --report report.html                # tables and plots of the finished runs
#
# Targets: reproduce_tables (default), rd_curves, bdrate, compare_paper, ablations, verdicts, all
# (all = reproduce_tables + ablations; verdicts repeats their runs over verdicts.train_seeds).
import os

from snakemake.utils import min_version, validate

min_version("8.0")


# A config file given with --configfile replaces the default one entirely (no merging of benchmarks).
# The default: config/config.yaml of the working directory, else the one beside this Snakefile.
DEFAULT_CONFIG = "config/config.yaml"
if not os.path.exists(DEFAULT_CONFIG):
    DEFAULT_CONFIG = os.path.join(workflow.basedir, DEFAULT_CONFIG)
if "benchmarks" not in config:

    configfile: DEFAULT_CONFIG


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


wildcard_constraints:
    benchmark="[A-Za-z0-9][A-Za-z0-9_-]*",
    scene="[A-Za-z0-9][A-Za-z0-9_-]*",
    method="[a-z0-9_]+",
    variant="default|(schedule|residual_dim|ds_init)-[A-Za-z0-9.]+",
    lmbda="[0-9][0-9.e+-]*",
    train_seed="[0-9]+",
    tableset="tables|tables_extended",
    plots="plots|plots_extended",


include: "workflow/rules/common.smk"
include: "workflow/rules/scenes.smk"
include: "workflow/rules/runs.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/ablations.smk"
include: "workflow/rules/verdicts.smk"


localrules:
    reproduce_tables,
    rd_curves,
    bdrate,
    compare_paper,
    ablations,
    verdicts,
    extended_tables,
    all,
    train_config,
    run_summary,
    runs_table,
    benchmark_tables,
    bdrate_table,
    rd_plot,
    paper_comparison,
    scene_table,
    ablation_table,
    ablation_runs_table,
    sweep_plot,
    main_verdicts,
    verdicts_table,
    verdict_runs_table,


rule reproduce_tables:
    default_target: True
    input:
        f"{RESULTS}/scenes.csv",
        f"{RESULTS}/runs.csv",
        expand(
            f"{TABLES}/{{table}}.{{ext}}",
            tableset="tables",
            benchmark=config["benchmarks"],
            table=["table1", "table3_bit_allocation", "table5_efficiency"],
            ext=["csv", "md"],
        ),
        expand(f"{TABLES}/survey", tableset="tables", benchmark=config["benchmarks"]),
        rules.rd_curves.input,
        rules.bdrate.input,
        rules.compare_paper.input,
        f"{RESULTS}/verdicts.csv",
        f"{RESULTS}/verdicts.md",
        f"{RESULTS}/verdicts_per_seed.csv",


rule all:
    input:
        rules.reproduce_tables.input,
        rules.ablations.input,
