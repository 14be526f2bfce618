"""The steps of a run, as the command line and the workflow call them: train (``train``), encode,
decode and evaluate (``codec``). This is the one layer that knows both the method registry and the
trainer, the codec and the evaluation; nothing below imports it."""
