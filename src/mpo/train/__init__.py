"""RL training of PPO, GRPO, DAPO, GSPO and MPO through one loop (docs/method.md §1, §3-§7), and of TEMPO (§8) and
GRPO on MoT-G rollouts (§9) beyond the paper.

Modules (one place per idea):

* ``variants``  -- named variants -> a flat method spec (pure Python; the Snakefile reads it)
* ``batch``     -- the prompt stream and the padded rollout-batch layout
* ``rewards``   -- outcome rewards from the graders
* ``methods``   -- what differs between methods: advantages, ratio, policy loss (via the ``mpo.algos`` registries)
* ``critic``    -- the value model (optionally with MTP value heads; ``value_mixture``)
* ``trainer``   -- the loop: rollout -> score -> advantages -> update -> log
* ``setup``     -- sizes, accelerator, models, optimizers, rollout engine
* ``sampling``  -- rollouts: sampled groups, DAPO dynamic sampling
* ``scoring``   -- old / reference log-probs, entropy, values (no grad)
* ``mixture``   -- MoT-G GRPO: the ``mot`` section, log-probs on the recorded mixture inputs
* ``update``    -- epochs of mini-batches of accumulated micro-batches, optimizer steps
* ``loss``      -- ``compose_loss``: the micro-batch loss from its terms, shares and coefficients
* ``metrics``   -- the metrics row and the run summary
* ``checkpoint`` -- save / resume / the final save
* ``dist``      -- collectives across processes
* ``__main__``  -- the CLI (``python -m mpo.train``)

Rollout engines are in ``mpo.rollout``; the formulas in ``mpo.algos``; the MTP modules in ``mpo.mtp``.
This package imports nothing heavy at import time.
"""

from __future__ import annotations

__all__ = ["Trainer", "TrainingDivergedError", "TrainSetupError", "train"]


def __getattr__(name):
    if name in __all__:
        from mpo.train import trainer

        return getattr(trainer, name)
    raise AttributeError(name)
