# Scenes: the embedded benchmark's generated scenes, and a summary table of every configured scene.


rule synth_scene:
    output:
        directory(f"{RESULTS}/scenes/{{scene}}"),
    params:
        family=lambda wc: SYNTH_SCENES[wc.scene]["family"],
        seed=lambda wc: SYNTH_SCENES[wc.scene]["seed"],
        width=config.get("synth", {}).get("width"),
        height=config.get("synth", {}).get("height"),
        views=config.get("synth", {}).get("views"),
    conda:
        ENV
    log:
        f"{RESULTS}/logs/synth_{{scene}}.log",
    shell:
        "predictgs synth --family {params.family} --seed {params.seed} --out {output:q} "
        "--width {params.width} --height {params.height} --views {params.views} --quiet > {log:q} 2>&1"


rule scene_info:
    input:
        scene_path,
    output:
        f"{RESULTS}/scene_info/{{benchmark}}/{{scene}}.json",
    params:
        protocol=lambda wc: protocol_flags(wc.benchmark),
    conda:
        ENV
    log:
        f"{RESULTS}/logs/scene_info_{{benchmark}}_{{scene}}.log",
    shell:
        "predictgs scene-info {input:q} {params.protocol} > {output:q} 2> {log:q}"


rule scene_table:
    input:
        [f"{RESULTS}/scene_info/{benchmark}/{scene}.json" for (benchmark, scene) in SCENES],
    output:
        report(
            f"{RESULTS}/scenes.csv",
            caption="../report/scenes.rst",
            category="Benchmark",
        ),
    params:
        scenes=[dict(benchmark=benchmark, scene=scene) for (benchmark, scene) in SCENES],
    conda:
        ENV
    log:
        f"{RESULTS}/logs/scene_table.log",
    script:
        "../scripts/scene_table.py"
