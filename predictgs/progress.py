"""Progress on stderr for the commands that work a while without a training loop (encode, decode): a bar
over their stages, shown only when asked (the commands show it when stderr is a terminal, or with
--progress)."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def stages(names: list[str], enabled: bool, desc: str):
    """``with stages([...], enabled, "encode") as step: step("encode"); ...``: one tick per stage."""
    from tqdm import tqdm

    bar = tqdm(total=len(names), desc=desc, unit="stage", disable=not enabled, leave=False,
               bar_format="{desc}: {n_fmt}/{total_fmt} {postfix} [{elapsed}]")
    started = []

    def step(name: str) -> None:
        if started:
            bar.update(1)
        started.append(name)
        bar.set_postfix_str(name)

    try:
        yield step
        if started:
            bar.update(1)
    finally:
        bar.close()
