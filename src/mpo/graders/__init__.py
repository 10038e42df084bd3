"""Reward functions: math answers (math-verify) and code (sandboxed unit tests).

* :mod:`mpo.graders.math` -- :func:`grade_math`, :class:`MathGrader`
  (worker processes with a hard per-item timeout), :func:`extract_boxed`.
* :mod:`mpo.graders.code` -- :func:`grade_code`, :class:`CodeGrader`,
  :class:`CodeResult`, :func:`extract_code`, :func:`probe_sandbox`, :func:`throughput`
  (sandbox layers and limits: ``docs/reliability.md``).

Both graders return 0.0 rather than raising for anything a model can write.
"""

from mpo.graders.code import CodeGrader, CodeResult, extract_code, grade_code, probe_sandbox, throughput
from mpo.graders.math import MathGrader, extract_boxed, grade_math, score_math_answer

__all__ = [
    "CodeGrader",
    "CodeResult",
    "MathGrader",
    "extract_boxed",
    "extract_code",
    "grade_code",
    "grade_math",
    "probe_sandbox",
    "score_math_answer",
    "throughput",
]
