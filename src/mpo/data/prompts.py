"""Prompt templates: the one place that turns a task into chat messages.

Both model families of the paper take every instruction in a single user turn and no system prompt
(DeepSeek-R1-Distill models are documented to work best that way; we use the same convention for the
Llama/SmolLM2 family so that the two families see identical text and differ only in the chat template
their tokenizer applies).

* math:   ``<question>\\n\\nPlease reason step by step, and put your final answer within \\boxed{}.``
* math, short-answer sources (:data:`SHORT_ANSWER_SOURCES`, the default scale's one-line sums):
  ``<question>\\n\\nGive only the final answer.`` -- graded on the last number math-verify finds (a 135M model
  asked to reason and box spends its whole token budget and rarely writes ``\\boxed{}``).
* code, assert-style tests (MBPP and its procedural stand-in): the task, the tests the function must pass,
  and a request for one ```python block (the MBPP prompt of Austin et al. 2021, in chat form).
* code, HumanEval (``tests=None``): the signature + docstring to be completed as a full function in one
  ```python block (the hidden `check` tests are never shown).

Records store ``question`` (raw text) and ``prompt`` (messages for the first model family of the config);
other stages rebuild prompts for another family with :func:`prompt_for_record`.
"""

from __future__ import annotations

FAMILIES = ("llama", "qwen2")

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
SHORT_ANSWER_INSTRUCTION = "Give only the final answer."
SHORT_ANSWER_SOURCES = ("reasoning_gym/chain_sum",)  # record["source"] values prompted for a bare answer

_TEMPLATES = {
    family: {
        "math": "{question}\n\n" + MATH_INSTRUCTION.replace("{}", "{{}}"),
        "math_short": "{question}\n\n" + SHORT_ANSWER_INSTRUCTION,
        "code_tests": (
            "You are an expert Python programmer, and here is your task: {question}\n\n"
            "Your code should pass these tests:\n\n{tests}\n\n"
            "Write the complete function in a single ```python code block."
        ),
        "code_complete": (
            "Complete the following Python function. Write the full function (signature, docstring "
            "and body, with any imports it needs) in a single ```python code block.\n\n"
            "```python\n{question}```"
        ),
    }
    for family in FAMILIES
}


def build_prompt(kind: str, family: str, question: str, tests: str | None = None,
                 short_answer: bool = False) -> list[dict]:
    """Chat messages for one task.

    kind: "math" or "code"; family: "llama" or "qwen2"; tests: assert-style tests shown to the model
    (code only; ``None`` for HumanEval-style completion of a signature + docstring); short_answer: math asks for
    the bare final answer instead of boxed step-by-step reasoning.
    """
    if family not in _TEMPLATES:
        raise ValueError(f"unknown model family {family!r}; expected one of {FAMILIES}")
    templates = _TEMPLATES[family]
    if kind == "math":
        content = templates["math_short" if short_answer else "math"].format(question=question.strip())
    elif kind == "code" and tests is not None:
        content = templates["code_tests"].format(question=question.strip(), tests=tests.strip())
    elif kind == "code":
        body = question if question.endswith("\n") else question + "\n"
        content = templates["code_complete"].format(question=body)
    else:
        raise ValueError(f"unknown task kind {kind!r}; expected 'math' or 'code'")
    return [{"role": "user", "content": content}]


def prompt_for_record(record: dict, family: str) -> list[dict]:
    """Rebuild a record's prompt for `family` (assert tests are shown; HumanEval `check` tests are not)."""
    tests = record.get("tests") if record.get("test_style") == "assert" else None
    return build_prompt(record["kind"], family, record["question"], tests=tests,
                        short_answer=record.get("source") in SHORT_ANSWER_SOURCES)
