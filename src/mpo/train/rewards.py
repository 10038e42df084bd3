"""Outcome rewards from the graders (computed in their worker processes / sandboxes).

reward = correctness (1.0 / 0.0) + ``format_bonus`` when the response has a parseable answer (a ``\\boxed{}``
for math, a fenced code block for code; the bonus defaults to 0, i.e. the reward is pure correctness).

* math: :class:`mpo.graders.MathGrader` (math-verify in a process pool with a hard per-item timeout) against the
  record's ``answer``.
* code: :func:`mpo.graders.extract_code` on the response, then :class:`mpo.graders.CodeGrader` runs the record's
  ``tests`` (``entry_point`` for HumanEval-style ``check`` tests) in sandboxed interpreters.

DAPO's overlong shaping is applied by the trainer on top of this score (``mpo.algos.overlong_penalty``).
"""

from __future__ import annotations

import re


class RewardFunction:
    """``__call__(texts, records) -> (rewards, correct)``; ``close()`` stops the grader workers."""

    def __init__(self, kind: str, *, workers: int = 2, timeout: float = 5.0, format_bonus: float = 0.0):
        if kind not in ("math", "code"):
            raise ValueError(f"unknown task kind {kind!r}")
        self.kind = kind
        self.format_bonus = float(format_bonus)
        if kind == "math":
            from mpo.graders import MathGrader

            self.grader = MathGrader(num_workers=workers, timeout=timeout)
        else:
            from mpo.graders import CodeGrader

            self.grader = CodeGrader(max_workers=workers, timeout=max(timeout, 10.0))

    def _formatted(self, text: str) -> bool:
        if self.kind == "math":
            from mpo.graders import extract_boxed

            return extract_boxed(text) is not None
        return re.search(r"```", text) is not None

    def __call__(self, texts: list[str], records: list[dict]) -> tuple[list[float], list[float]]:
        if self.kind == "math":
            correct = self.grader.grade_batch(texts, [str(r["answer"]) for r in records])
        else:
            from mpo.graders import extract_code

            correct = self.grader.grade_batch(
                [extract_code(t) for t in texts], [r["tests"] for r in records], [r.get("entry_point") for r in records]
            )
        rewards = [
            float(c) + (self.format_bonus if self.format_bonus and self._formatted(t) else 0.0)
            for c, t in zip(correct, texts)
        ]
        return rewards, [float(c) for c in correct]

    def close(self) -> None:
        self.grader.close()
