# The paper's claims (results/paper/claims.yaml), each tested on our runs as a relation between methods
# or settings (BD-rate, ratio, delta, ordering), never as our absolute numbers against the paper's:
#
#   <results_dir>/verdicts.csv|md, verdicts_per_seed.csv         reproduce_tables: the main runs, train_seeds
#   <results_dir>/verdicts/verdicts.csv|md, verdicts_per_seed.csv target `verdicts`: main + ablation runs,
#   <results_dir>/verdicts/runs.csv                                 each once per verdicts.train_seeds
#
# A verdict needs at least two seeds (a spread); with one, a claim is "insufficient data".


rule main_verdicts:
    input:
        runs=main_runs(),
        claims=CLAIMS,
    output:
        csv=report(
            f"{RESULTS}/verdicts.csv",
            caption="../report/verdicts.rst",
            category="1. Verdicts",
            subcategory="reproduce_tables",
        ),
        md=f"{RESULTS}/verdicts.md",
        per_seed=f"{RESULTS}/verdicts_per_seed.csv",
    params:
        defaults=PREDICTGS_DEFAULTS,
        seeds=TRAIN_SEEDS,
        target="reproduce_tables",
        stand_ins=STAND_INS,
    conda:
        ENV
    log:
        f"{RESULTS}/logs/verdicts_main.log",
    script:
        "../scripts/verdicts.py"


rule verdicts_table:
    input:
        runs=verdict_runs(),
        claims=CLAIMS,
    output:
        csv=report(
            f"{VERDICT_DIR}/verdicts.csv",
            caption="../report/verdicts.rst",
            category="1. Verdicts",
            subcategory="verdicts",
        ),
        md=f"{VERDICT_DIR}/verdicts.md",
        per_seed=f"{VERDICT_DIR}/verdicts_per_seed.csv",
    params:
        defaults=PREDICTGS_DEFAULTS,
        seeds=VERDICT_SEEDS,
        target="verdicts",
        stand_ins=STAND_INS,
    conda:
        ENV
    log:
        f"{RESULTS}/logs/verdicts.log",
    script:
        "../scripts/verdicts.py"


rule verdict_runs_table:
    input:
        runs=verdict_runs(),
    output:
        report(f"{VERDICT_DIR}/runs.csv", caption="../report/runs.rst", category="1. Verdicts",
               subcategory="verdicts"),
    conda:
        ENV
    log:
        f"{RESULTS}/logs/verdict_runs_table.log",
    script:
        "../scripts/runs_table.py"


rule verdicts:
    input:
        expand(f"{VERDICT_DIR}/verdicts.{{ext}}", ext=["csv", "md"]),
        f"{VERDICT_DIR}/verdicts_per_seed.csv",
        f"{VERDICT_DIR}/runs.csv",
