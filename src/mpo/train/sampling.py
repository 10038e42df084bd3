"""Rollouts: sample G responses per prompt, grade them, and (DAPO) shape and filter the groups.

MoT-G GRPO (``Sampler.mot`` set, ``mixture.py``) samples with ``engine.generate_mixture`` instead; the recorded
mixture inputs travel with their groups into ``batch.resp`` (``mpo.mot.stack_rollouts``).

:func:`sample_groups` generates with the rollout engine (``mpo.rollout``; seeded per step, round and process, so a
resumed run samples the same) and grades (``rewards.py``). :func:`collect_batch` draws prompts from the stream until
the step's batch is full: one round, or with DAPO's dynamic sampling, rounds until every process holds enough
groups whose accuracies differ (or ``dynamic_sampling_max_retries`` extra rounds were spent; then dropped groups fill it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mpo import algos
from mpo.train.batch import Batch, collate


def sub_seed(*parts: int) -> int:
    """A 31-bit seed derived from integers (numpy SeedSequence): per step / round / process streams."""
    return int(np.random.SeedSequence([int(p) % (2**32) for p in parts]).generate_state(1)[0]) & 0x7FFFFFFF


@dataclass
class Sampler:
    """What sampling needs: the engine, tokenizer, reward function, prompts and the method's sampling settings."""

    engine: object
    tokenizer: object
    reward_fn: object
    records: list
    spec: dict
    tcfg: dict
    seed: int
    rank: int
    temperature: float
    autocast: object  # () -> context manager (the accelerator's autocast)
    mot: object = None  # mpo.mot.MoTConfig: mixture-of-token rollouts (method mot_grpo); None: ordinary sampling

    def sample_groups(self, local: list[int], step: int, round_: int) -> list[dict]:
        """G graded responses for each of the prompts ``local`` (indices into records)."""
        t, G = self.tcfg, self.spec["group_size"]
        recs = [self.records[i] for i in local]
        kw = dict(n=G, max_new_tokens=t["max_response_length"], temperature=self.temperature, top_p=t["top_p"],
                  seed=sub_seed(self.seed, step, round_, self.rank))
        mixtures = None
        with self.autocast():
            if self.mot is None:
                responses = self.engine.generate([r["prompt_ids"] for r in recs], **kw)
            else:
                mixtures = self.engine.generate_mixture([r["prompt_ids"] for r in recs], mot=self.mot, **kw)
                responses = [[m.tokens for m in group] for group in mixtures]
        texts = [[self.tokenizer.decode(x, skip_special_tokens=True) for x in group] for group in responses]
        flat_texts = [x for g in texts for x in g]
        flat_recs = [r for r in recs for _ in range(G)]
        scores, correct = self.reward_fn(flat_texts, flat_recs) if flat_texts else ([], [])
        scores = torch.tensor(scores, dtype=torch.float32)
        lengths = torch.tensor([len(x) for g in responses for x in g], dtype=torch.float32)
        if self.spec["overlong_shaping"]:
            buf = t["overlong_buffer"] if t["overlong_buffer"] is not None else t["max_response_length"] // 4
            scores = scores + algos.overlong_penalty(lengths, t["max_response_length"], buf, t["overlong_factor"])
        eos = set(self.engine.eos_ids)
        groups = []
        for i, rec in enumerate(recs):
            sl = slice(i * G, (i + 1) * G)
            groups.append({"prompt_ids": rec["prompt_ids"], "responses": responses[i], "scores": scores[sl],
                           "correct": torch.tensor(correct[sl], dtype=torch.float32), "lengths": lengths[sl],
                           "truncated": torch.tensor([float(not (x and x[-1] in eos)) for x in responses[i]])})
            if mixtures is not None:
                groups[-1]["mixture"] = mixtures[i]
        return groups


def dynamic_sampling_split(groups: list[dict], group_size: int) -> tuple[list[dict], list[dict]]:
    """DAPO's filter: (groups whose accuracies are not all equal, the rest).

    Like verl's DAPO (``filter_groups.metric: acc``) it reads the un-shaped correctness, not the score after the
    overlong shaping: responses of different lengths but the same correctness are no informative group.
    """
    accuracy = torch.cat([g["correct"] for g in groups])
    keep = algos.dynamic_sampling_keep(accuracy, group_size).view(-1, group_size)[:, 0].tolist()
    return [g for g, k in zip(groups, keep) if k], [g for g, k in zip(groups, keep) if not k]


def collect_batch(sampler: Sampler, stream, progress, dist, sizes, step: int, max_retries: int) -> tuple[Batch, dict]:
    """The step's rollout batch (rows group-major) and its rollout statistics (of the first round's groups)."""
    G, dynamic = sampler.spec["group_size"], sampler.spec["dynamic_sampling"]
    need, rank = sizes.prompts_local, sampler.rank
    kept, dropped, first = [], [], None
    rounds = 0
    while True:
        idx = stream.take(sizes.prompts)
        progress.prompts_seen += sizes.prompts
        local = idx[rank * need : (rank + 1) * need]
        if len(kept) < need:
            groups = sampler.sample_groups(local, step, rounds)
            first = first or groups
            if dynamic:
                good, bad = dynamic_sampling_split(groups, G)
                kept, dropped = kept + good, dropped + bad
            else:
                kept += groups
        rounds += 1
        if not dynamic or not dist.any(len(kept) < need) or rounds > max_retries:
            break
    filled = max(0, need - len(kept))
    kept = (kept + dropped[:filled])[:need]
    # rows: group-major (the G responses of a prompt are consecutive)
    prompts = [g["prompt_ids"] for g in kept for _ in range(G)]
    responses = [r for g in kept for r in g["responses"]]
    batch = collate(prompts, responses, sampler.tokenizer.pad_token_id)
    batch.row["scores"] = torch.cat([g["scores"] for g in kept])
    batch.row["correct"] = torch.cat([g["correct"] for g in kept])
    if "mixture" in kept[0]:
        from mpo.mot import stack_rollouts

        batch.resp.update(stack_rollouts([m for g in kept for m in g["mixture"]], batch.response_len))
    cat = lambda key: torch.cat([g[key] for g in first])  # noqa: E731
    stats = {"reward": cat("scores"), "accuracy": cat("correct"), "length": cat("lengths"),
             "truncated": cat("truncated"), "ds_rounds": rounds, "ds_dropped": len(dropped) if dynamic else 0,
             "ds_filled": filled}
    return batch, stats
