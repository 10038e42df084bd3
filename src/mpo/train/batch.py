"""Prompts in, padded tensors out: the training data stream and the rollout batch layout.

Layout of a rollout batch (N rows, one per sampled response)::

    input_ids      [N, P + T]   left-padded prompt (P = longest prompt) ++ right-padded response (T = longest)
    attention_mask [N, P + T]   1 on real tokens
    response_mask  [N, T]       1 on response tokens (EOS included)

so response token t of every row sits at sequence position P + t and is *predicted* at position P - 1 + t:
``response_view(x, P, T) = x[:, P-1 : P-1+T]`` turns any per-position tensor (log-probs, values, entropy) into the
response-aligned tensors ``mpo.algos`` expects. Position ids come from the attention mask (``mpo.mtp``), so the
left padding is invisible to the model, as in generation.

:class:`PromptStream` walks the train split in seeded, per-epoch permutations; its position (epoch, cursor) is
part of the checkpoint, so a resumed run sees exactly the prompts an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mpo.utils import read_jsonl


# ------------------------------------------------------------------------------------------------ prompts
def load_train_records(data_root: str | Path, dataset: str) -> list[dict]:
    path = Path(data_root) / dataset / "train.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"training data not found: {path} (run the prepare_data rule for '{dataset}')")
    records = list(read_jsonl(path))
    if not records:
        raise ValueError(f"{path} holds no records")
    return records


def encode_prompt(tokenizer, messages: list[dict]) -> list[int]:
    """Chat-template the messages (generation prompt appended) and tokenise without extra special tokens."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def prepare_prompts(records: list[dict], tokenizer, family: str, max_prompt_length: int) -> tuple[list[dict], int]:
    """Attach ``prompt_ids`` (for the model's family) to each record; drop prompts longer than the limit.

    Returns (kept records, number dropped). Like verl's ``filter_overlong_prompts``.
    """
    from mpo.data.prompts import prompt_for_record

    kept, dropped = [], 0
    for rec in records:
        try:
            messages = prompt_for_record(rec, family)
        except Exception:  # noqa: BLE001 - records from other sources: use their stored prompt
            messages = rec["prompt"]
        ids = encode_prompt(tokenizer, messages)
        if len(ids) > max_prompt_length:
            dropped += 1
            continue
        kept.append({**rec, "prompt_ids": ids})
    if not kept:
        raise ValueError(f"every prompt is longer than train.max_prompt_length={max_prompt_length}")
    return kept, dropped


@dataclass
class PromptStream:
    """Endless seeded stream over ``n`` items: epoch e visits ``permutation_e`` (numpy default_rng([seed, e]))."""

    n: int
    seed: int
    epoch: int = 0
    cursor: int = 0
    _perm: np.ndarray | None = field(default=None, repr=False)

    def _permutation(self) -> np.ndarray:
        if self._perm is None:
            self._perm = np.random.default_rng([int(self.seed), int(self.epoch)]).permutation(self.n)
        return self._perm

    def take(self, k: int) -> list[int]:
        out = []
        while len(out) < k:
            perm = self._permutation()
            step = min(k - len(out), self.n - self.cursor)
            out.extend(int(i) for i in perm[self.cursor : self.cursor + step])
            self.cursor += step
            if self.cursor >= self.n:
                self.epoch, self.cursor, self._perm = self.epoch + 1, 0, None
        return out

    @property
    def epochs_done(self) -> float:
        return self.epoch + self.cursor / self.n

    def state_dict(self) -> dict:
        return {"n": self.n, "seed": self.seed, "epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        if int(state["n"]) != self.n or int(state["seed"]) != self.seed:
            raise ValueError(f"checkpoint data stream (n={state['n']}, seed={state['seed']}) does not match this run "
                             f"(n={self.n}, seed={self.seed})")
        self.epoch, self.cursor, self._perm = int(state["epoch"]), int(state["cursor"]), None


# ------------------------------------------------------------------------------------------------ batch
SEQ_KEYS = ("input_ids", "attention_mask")


@dataclass
class Batch:
    """Tensors of N rollouts: ``seq`` [N, P+T], ``resp`` [N, T, ...] and ``row`` [N, ...] (module docstring)."""

    seq: dict[str, torch.Tensor]
    resp: dict[str, torch.Tensor]
    row: dict[str, torch.Tensor]
    prompt_len: int

    @property
    def size(self) -> int:
        return self.seq["input_ids"].shape[0]

    @property
    def response_len(self) -> int:
        return self.resp["mask"].shape[1]

    def select(self, idx: torch.Tensor | list[int], trim: bool = True) -> "Batch":
        """Rows ``idx``; with ``trim`` the columns that are padding in every selected row are dropped."""
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.seq["input_ids"].device)
        seq = {k: v.index_select(0, idx) for k, v in self.seq.items()}
        resp = {k: v.index_select(0, idx) for k, v in self.resp.items()}
        row = {k: v.index_select(0, idx) for k, v in self.row.items()}
        P = self.prompt_len
        if trim and len(idx) > 0:
            am = seq["attention_mask"]
            first = int(am[:, :P].any(0).nonzero()[0]) if am[:, :P].any() else P - 1
            first = min(first, P - 1)  # keep at least the last prompt column
            T = max(int(resp["mask"].sum(1).max()), 1)
            seq = {k: v[:, first : P + T] for k, v in seq.items()}
            resp = {k: v[:, :T] for k, v in resp.items()}
            P = P - first
        return Batch(seq, resp, row, P)

    def to(self, device) -> "Batch":
        mv = lambda d: {k: v.to(device) for k, v in d.items()}  # noqa: E731
        return Batch(mv(self.seq), mv(self.resp), mv(self.row), self.prompt_len)

    def logprob_mask(self) -> torch.Tensor:
        """[N, P+T] bool: positions that predict a response token (P - 1 + t for t < L)."""
        m = torch.zeros_like(self.seq["attention_mask"], dtype=torch.bool)
        T = self.response_len
        m[:, self.prompt_len - 1 : self.prompt_len - 1 + T] = self.resp["mask"].bool()
        return m

    def response_view(self, x: torch.Tensor) -> torch.Tensor:
        """Per-position tensor [N, P+T, ...] -> response-aligned [N, T, ...] (position P - 1 + t predicts token t)."""
        return x[:, self.prompt_len - 1 : self.prompt_len - 1 + self.response_len]


def collate(prompts: list[list[int]], responses: list[list[int]], pad_id: int) -> Batch:
    """Build a :class:`Batch` from N (prompt, response) token lists (responses may be empty)."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    N = len(prompts)
    P = max(len(p) for p in prompts)
    T = max(max((len(r) for r in responses), default=0), 1)
    ids = torch.full((N, P + T), int(pad_id), dtype=torch.long)
    am = torch.zeros((N, P + T), dtype=torch.long)
    rmask = torch.zeros((N, T), dtype=torch.bool)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        ids[i, P - len(p) : P] = torch.tensor(p, dtype=torch.long)
        am[i, P - len(p) : P] = 1
        if r:
            ids[i, P : P + len(r)] = torch.tensor(r, dtype=torch.long)
            am[i, P : P + len(r)] = 1
            rmask[i, : len(r)] = True
    return Batch({"input_ids": ids, "attention_mask": am}, {"mask": rmask}, {}, P)


def micro_batches(n: int, size: int) -> list[list[int]]:
    return [list(range(a, min(a + size, n))) for a in range(0, n, size)]
