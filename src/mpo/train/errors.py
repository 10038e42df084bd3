"""The trainer's errors (re-exported by ``mpo.train.trainer``)."""

from __future__ import annotations


class TrainingDivergedError(RuntimeError):
    """A loss or gradient norm became NaN / inf."""


class TrainSetupError(ValueError):
    """Inconsistent batch sizes, missing MTP modules, ..."""
