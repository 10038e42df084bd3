"""Pulling the program out of a model completion (fenced code blocks)."""

from __future__ import annotations

import re

__all__ = ["extract_code"]

_FENCE_RE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[^\n]*$", re.MULTILINE)
_PYTHON_TAGS = {"python", "python3", "py", "py3"}


def extract_code(completion: str) -> str:
    """Return the code of the last ```` ```python ```` block in *completion*.

    Falls back to the last untagged ```` ``` ```` block, then to the whole
    text.  A final block whose closing fence is missing (generation cut off
    at max length) runs to the end of the text.
    """
    fences = list(_FENCE_RE.finditer(completion))
    blocks: list[tuple[str, str]] = []  # (language tag, body)
    i = 0
    while i < len(fences):
        opening = fences[i]
        closing = fences[i + 1] if i + 1 < len(fences) else None
        body_end = closing.start() if closing else len(completion)
        body = completion[opening.end() + 1 : body_end]
        blocks.append((opening.group(1).lower(), body))
        i += 2
    for wanted in (_PYTHON_TAGS, {""}):
        for tag, body in reversed(blocks):
            if tag in wanted:
                return body.rstrip() + "\n" if body.strip() else ""
    return completion
