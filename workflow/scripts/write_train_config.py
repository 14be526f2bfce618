"""Write one run's training configuration (the YAML that `predictgs train --config FILE` reads); used
by the rule train_config (workflow/rules/runs.smk). Written atomically (predictgs.io)."""

import yaml

from predictgs.io import write_atomic

HEADER = (
    "# Written by the workflow (rule train_config) from the workflow configuration; edit the\n"
    "# config file (train_config, benchmarks.<name>.train_config), not this file.\n"
)


def write_train_config(content: dict, path) -> None:
    write_atomic(path, HEADER + yaml.safe_dump(content, sort_keys=False))


if "snakemake" in globals():
    write_train_config(dict(snakemake.params.content), snakemake.output[0])  # noqa: F821 - injected by Snakemake
    with open(snakemake.log[0], "w", encoding="utf-8") as log:  # noqa: F821
        print(f"wrote {snakemake.output[0]}", file=log)  # noqa: F821
