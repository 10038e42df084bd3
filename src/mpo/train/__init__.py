"""RL training of PPO, GRPO, DAPO, GSPO and MPO through one loop (METHOD.md sections 1, 3-7).

Modules (one place per idea):

* ``variants``  -- named variants -> a flat method spec (pure Python; the Snakefile reads it)
* ``batch``     -- the prompt stream and the padded rollout-batch layout
* ``rewards``   -- outcome rewards from the graders
* ``methods``   -- what differs between methods: advantages, ratio, policy loss
* ``critic``    -- the value model (optionally with MTP value heads)
* ``trainer``   -- the loop: rollouts, scoring, updates, metrics, checkpoints
* ``__main__``  -- the CLI (``python -m mpo.train``)

Rollout engines are in ``mpo.rollout``; the formulas in ``mpo.algos``; the MTP modules in ``mpo.mtp``.
This package imports nothing heavy at import time.
"""

from __future__ import annotations

__all__ = ["Trainer", "TrainingDivergedError", "train"]


def __getattr__(name):
    if name in __all__:
        from mpo.train import trainer

        return getattr(trainer, name)
    raise AttributeError(name)
