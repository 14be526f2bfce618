"""Errors a user can cause. Each has one type; the CLI prints its message on one line and exits 2."""


class PredictGSError(Exception):
    """Base class for every error caused by user input (paths, scenes, configs, bitstreams)."""


class SceneError(PredictGSError):
    """A scene cannot be read: missing folder or file, count mismatch, unsupported camera model,
    unreadable image. The message names the file or the model."""


class ConfigError(PredictGSError):
    """A configuration value or command-line option is invalid."""


class BitstreamError(PredictGSError):
    """A compressed file is corrupt, truncated, or not ours. The message names the section."""


class ReportError(PredictGSError):
    """Results cannot be tabulated or compared: an unreadable metrics.json, a missing field, or too few
    rate points for a BD-rate. The message names the file, or the method and benchmark concerned."""


class TrainingError(PredictGSError):
    """Training cannot go on (e.g. the loss became NaN). The message says where to resume from."""
