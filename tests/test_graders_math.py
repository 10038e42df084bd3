"""extract_boxed runs on model text in the trainer's process, without a timeout: it must be linear-time.

The old version rescanned the whole tail for every unclosed ``\\boxed{`` (and ``rfind``-ed the whole prefix for
the other command), so 8000 unclosed boxes took ~21 s; these tests fail on it.
"""

from __future__ import annotations

import random
import time

import pytest

from mpo.graders.math import extract_boxed

COMMANDS = ("\\boxed", "\\fbox")


def _reference(text: str) -> str | None:
    """The previous (quadratic) algorithm, kept as the specification of the result on small inputs."""
    start = max(text.rfind(cmd) for cmd in COMMANDS) if text else -1
    while start >= 0:
        cmd = next(c for c in COMMANDS if text.startswith(c, start))
        pos = start + len(cmd)
        content = None
        if pos < len(text) and text[pos] == " ":
            token = text[pos + 1 :].split("$", 1)[0].split(None, 1)
            content = token[0] if token else None
        elif pos < len(text) and text[pos] == "{":
            depth = 0
            for i in range(pos, len(text)):
                if text[i] in "{}" and text[i - 1] != "\\":
                    depth += 1 if text[i] == "{" else -1
                    if depth == 0:
                        content = text[pos + 1 : i].strip()
                        break
        if content is not None:
            return content
        start = max(text.rfind(c, 0, start) for c in COMMANDS)
    return None


def test_same_answers_as_the_reference_on_random_latex():
    rng = random.Random(0)
    pieces = ["\\boxed", "\\fbox", "{", "}", "\\{", "\\}", " ", "$", "a", "1", "\\", "x", "\n"]
    for _ in range(30_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        assert extract_boxed(text) == _reference(text), repr(text)


def _timed(text: str) -> tuple[str | None, float]:
    start = time.perf_counter()
    result = extract_boxed(text)
    return result, time.perf_counter() - start


@pytest.mark.parametrize("name,text,expected", [
    ("8000 unclosed boxes", "\\boxed{" * 8000, None),
    ("8000 unclosed fboxes after an answer", "\\boxed{7} " + "\\fbox{x" * 8000, "7"),
    ("unclosed boxes then 1 MB of prose", "\\boxed{" * 8000 + "word " * 200_000, None),
    ("answer, then 100k nested open groups", "\\boxed{42}" + "{\\boxed{a" * 100_000, "42"),
    ("200 KB of braces in one closed box", "\\boxed{" + "{}" * 100_000 + "}", "{}" * 100_000),
    ("20000 brace-less boxes before $", "\\boxed $" * 20_000, None),
])
def test_extraction_is_linear_on_adversarial_text(name, text, expected):
    result, seconds = _timed(text)
    assert result == expected
    assert seconds < 0.5, f"{name}: {seconds:.2f}s"
