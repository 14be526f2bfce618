# predictgs workflow. `snakemake --cores all reproduce_tables` (or `make reproduce`).
# The default configuration (config/config.yaml) runs on the embedded synthetic benchmark.
from snakemake.utils import min_version, validate

min_version("8.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")

RESULTS = config["results_dir"]
SCENES = {
    f"{benchmark}_seed{seed}": dict(family=spec["family"], seed=seed, benchmark=benchmark)
    for benchmark, spec in config["benchmarks"].items()
    for seed in spec["seeds"]
}



wildcard_constraints:
    scene="[A-Za-z0-9_-]+",


include: "workflow/rules/scenes.smk"


rule reproduce_tables:
    default_target: True
    input:
        f"{RESULTS}/scenes.csv",
