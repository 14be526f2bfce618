# Ablations (target `ablations`), each a grid of runs at the configured benchmarks and lambdas:
#
#   <results_dir>/ablations/components.csv|md      Table 4: HAC, SFP only, SFP + f_r, all (+ progressive)
#   <results_dir>/ablations/schedule.csv|md        Table 6: none / linear / cosine downsampling schedule
#   <results_dir>/ablations/residual_dim.csv|md    Fig. 6: residual dimension sweep (+ .png|.pdf)
#   <results_dir>/ablations/ds_init.csv|md         Fig. 7: initial downsampling scale sweep (+ .png|.pdf)
#   <results_dir>/ablations/runs.csv               one row per ablation run
#
# Sweep values equal to the paper's defaults reuse the main Predict-GS runs (variant "default").

ABLATION_DIR = f"{RESULTS}/ablations"


rule ablation_table:
    input:
        runs=lambda wc: ablation_runs(wc.ablation),
    output:
        csv=report(
            f"{ABLATION_DIR}/{{ablation}}.csv",
            caption="../report/ablation.rst",
            category="Ablations",
        ),
        md=f"{ABLATION_DIR}/{{ablation}}.md",
    wildcard_constraints:
        ablation="|".join(ABLATIONS),
    params:
        defaults=PREDICTGS_DEFAULTS,
    conda:
        ENV
    log:
        f"{RESULTS}/logs/ablation_{{ablation}}.log",
    script:
        "../scripts/ablation_table.py"


rule sweep_plot:
    input:
        f"{ABLATION_DIR}/{{sweep}}.csv",
    output:
        png=report(
            f"{ABLATION_DIR}/{{sweep}}.png",
            caption="../report/sweep.rst",
            category="Ablations",
        ),
        pdf=f"{ABLATION_DIR}/{{sweep}}.pdf",
    wildcard_constraints:
        sweep="residual_dim|ds_init",
    conda:
        ENV
    log:
        f"{RESULTS}/logs/sweep_{{sweep}}.log",
    script:
        "../scripts/sweep_plot.py"


rule ablation_runs_table:
    input:
        runs=sorted({run for kind in configured_ablations() for run in ablation_runs(kind)}),
    output:
        report(f"{ABLATION_DIR}/runs.csv", caption="../report/runs.rst", category="Ablations"),
    conda:
        ENV
    log:
        f"{RESULTS}/logs/ablation_runs_table.log",
    script:
        "../scripts/runs_table.py"


rule ablations:
    input:
        expand(f"{ABLATION_DIR}/{{ablation}}.{{ext}}", ablation=configured_ablations(), ext=["csv", "md"]),
        expand(
            f"{ABLATION_DIR}/{{sweep}}.{{ext}}",
            sweep=[kind for kind in configured_ablations() if kind in ("residual_dim", "ds_init")],
            ext=["png", "pdf"],
        ),
        f"{ABLATION_DIR}/runs.csv" if configured_ablations() else [],
