# Scenes of the embedded benchmark and their summaries.


rule synth_scene:
    output:
        directory(f"{RESULTS}/scenes/{{scene}}"),
    params:
        family=lambda wc: SCENES[wc.scene]["family"],
        seed=lambda wc: SCENES[wc.scene]["seed"],
        width=config["synth"]["width"],
        height=config["synth"]["height"],
        views=config["synth"]["views"],
    conda:
        "../../environment.yml"
    log:
        f"{RESULTS}/logs/synth_{{scene}}.log",
    shell:
        "predictgs synth --family {params.family} --seed {params.seed} --out {output} "
        "--width {params.width} --height {params.height} --views {params.views} --quiet > {log} 2>&1"


rule scene_info:
    input:
        f"{RESULTS}/scenes/{{scene}}",
    output:
        f"{RESULTS}/scene_info/{{scene}}.json",
    conda:
        "../../environment.yml"
    log:
        f"{RESULTS}/logs/scene_info_{{scene}}.log",
    shell:
        "predictgs scene-info {input} > {output} 2> {log}"


rule scene_table:
    input:
        expand(f"{RESULTS}/scene_info/{{scene}}.json", scene=sorted(SCENES)),
    output:
        f"{RESULTS}/scenes.csv",
    params:
        benchmarks={name: spec["benchmark"] for name, spec in SCENES.items()},
    conda:
        "../../environment.yml"
    log:
        f"{RESULTS}/logs/scene_table.log",
    script:
        "../scripts/scene_table.py"
