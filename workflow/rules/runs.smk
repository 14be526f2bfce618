# One run = (benchmark, scene, method, variant, lambda, training seed), all of its files in one directory:
#
#   <results_dir>/runs/<benchmark>/<scene>/<method>/<variant>/lambda<lambda>/train_seed<N>/
#     config.yaml  train.log  checkpoint.pt  metrics.json  per_view.json    predictgs train
#     scene.pgs (+ size, encode/decode time in metrics.json)                  predictgs encode
#     decoded/  (decoded model; its metrics.json and per-view file)           predictgs decode / eval
#     decoded_metrics.json                                                    copy of decoded/metrics.json
#     summary.json   what the tables read: metrics.json + the decoded model's quality, FPS and device
#                    + the jobs' wall time and memory; checked first (scripts/run_summary.py): scene.pgs
#                    must have the size and CRC32 metrics.json records, decoded_metrics.json must equal
#                    decoded/metrics.json, which must come from this scene.pgs
#     logs/<step>.log  benchmarks/<step>.tsv                                 per job (Snakemake)
#
# variant: "default" (the paper's settings) or an ablation setting such as "residual_dim-10".
# train_seed<N>: `predictgs train --seed N` (config train_seeds; verdicts.train_seeds for `verdicts`); the
# scene's own generation seed is part of the scene name (<benchmark>_seed<M>, config scene_seeds).
# checkpoint.pt and config.yaml are deliberately not declared outputs: Snakemake deletes declared outputs
# before a job starts, and training resumes from them after an interruption (--rerun-incomplete).
# metrics.json is train's output; encode adds the bitstream's size and timings to it in place.


rule train_config:
    output:
        TRAIN_CONFIG,
    params:
        content=lambda wc: train_config(wc.benchmark, wc.method, wc.variant),
    conda:
        ENV
    log:
        f"{RESULTS}/logs/train_config_{{benchmark}}_{{method}}_{{variant}}.log",
    script:
        "../scripts/write_train_config.py"


rule train:
    input:
        scene=scene_path,
        config=TRAIN_CONFIG,
    output:
        metrics=f"{RUN}/metrics.json",
        per_view=f"{RUN}/per_view.json",
    params:
        run_dir=lambda wc, output: os.path.dirname(output.metrics),
        lmbda=lambda wc: "" if wc.lmbda == NO_RATE else f"--lmbda {wc.lmbda}",
        extra=EXTRA_ARGS["train"],
    threads: THREADS["train"]
    resources:
        gpu=GPU,
    conda:
        ENV
    log:
        f"{RUN}/logs/train.log",
    benchmark:
        f"{RUN}/benchmarks/train.tsv"
    shell:
        # An interrupted run resumes from its checkpoint; a run whose configuration changed (the CLI
        # refuses to resume it) starts again from scratch.
        """
        export OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}
        args=(--method {wildcards.method} --scene {input.scene:q} --out {params.run_dir:q} \
              --config {input.config:q} --benchmark {wildcards.benchmark} --seed {wildcards.train_seed} \
              {params.lmbda} --quiet {params.extra})
        if ! predictgs train "${{args[@]}}" > {log:q} 2>&1; then
            grep -q "holds a run with another configuration" {log:q} || exit 1
            echo "predictgs workflow: configuration changed, restarting the run" >> {log:q}
            predictgs train "${{args[@]}}" --restart >> {log:q} 2>&1
        fi
        """


rule encode:
    input:
        trained=f"{RUN}/per_view.json",
    output:
        f"{RUN}/scene.pgs",
    params:
        run_dir=lambda wc, input: os.path.dirname(input.trained),
        extra=EXTRA_ARGS["encode"],
    threads: THREADS["encode"]
    resources:
        gpu=GPU,
    conda:
        ENV
    log:
        f"{RUN}/logs/encode.log",
    benchmark:
        f"{RUN}/benchmarks/encode.tsv"
    shell:
        "OMP_NUM_THREADS={threads} predictgs encode {params.run_dir:q} -o {output:q} {params.extra} > {log:q} 2>&1"


rule decode:
    input:
        f"{RUN}/scene.pgs",
    output:
        directory(f"{RUN}/decoded"),
    params:
        extra=EXTRA_ARGS["decode"],
    threads: THREADS["decode"]
    resources:
        gpu=GPU,
    conda:
        ENV
    log:
        f"{RUN}/logs/decode.log",
    benchmark:
        f"{RUN}/benchmarks/decode.tsv"
    shell:
        "OMP_NUM_THREADS={threads} predictgs decode {input:q} -o {output:q} {params.extra} > {log:q} 2>&1"


rule evaluate_decoded:
    input:
        decoded=f"{RUN}/decoded",
        scene=scene_path,
    output:
        f"{RUN}/decoded_metrics.json",
    params:
        device=config["device"],
        extra=EXTRA_ARGS["eval"],
    threads: THREADS["eval"]
    resources:
        gpu=GPU,
    conda:
        ENV
    log:
        f"{RUN}/logs/eval.log",
    benchmark:
        f"{RUN}/benchmarks/eval.tsv"
    shell:
        "OMP_NUM_THREADS={threads} predictgs eval {input.decoded:q} --scene {input.scene:q} "
        "--device {params.device} {params.extra} > {log:q} 2>&1 "
        "&& cp {input.decoded:q}/metrics.json {output:q}"


rule run_summary:
    input:
        unpack(summary_inputs),
    output:
        f"{RUN}/summary.json",
    conda:
        ENV
    log:
        f"{RUN}/logs/summary.log",
    script:
        "../scripts/run_summary.py"
