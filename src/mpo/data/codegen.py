"""Procedural MBPP stand-in (source ``procedural_code``): small Python-function tasks with assert tests.

Each of the 16 templates below draws random parameters (which change the task text, e.g. the divisors in
"multiples of 3 or 7") and random test inputs, and yields an MBPP-like task: a one-sentence description
("Write a function to ..."), a reference solution, and 3 ``assert f(...) == ...`` tests. The expected values
are computed by an *independent* Python implementation inside the template (not by running the reference
code), so tests/test_data.py executing every reference solution against its tests is a real check.
Templates are drawn uniformly; the stream is a deterministic function of the seed.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterator

WORDS = ("apple", "river", "stone", "cloud", "green", "tiger", "lamp", "sun", "book", "tree", "map", "wind")
ORDINALS = {1: "smallest", 2: "second smallest", 3: "third smallest"}


@dataclass(frozen=True)
class CodeTask:
    template: str
    func: str
    text: str
    code: str
    cases: tuple  # ((args tuple, expected), ...)

    @property
    def tests(self) -> str:
        return "\n".join(f"assert {self.func}({', '.join(map(repr, args))}) == {exp!r}" for args, exp in self.cases)


def _ints(rng, n, lo=-20, hi=20):
    return [rng.randint(lo, hi) for _ in range(n)]


def _sentence(rng):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))


def _runs(rng, alphabet="abc"):
    return "".join(rng.choice(alphabet) * rng.randint(1, 4) for _ in range(rng.randint(1, 5)))


def sum_multiples(rng):
    a, b = rng.sample(range(2, 10), 2)
    def expect(n):
        s = lambda k: k * ((n - 1) // k) * ((n - 1) // k + 1) // 2  # noqa: E731 (sum of multiples of k below n)
        return s(a) + s(b) - s(a * b // math.gcd(a, b))
    return ("sum_multiples",
            f"Write a function to find the sum of all natural numbers below n that are multiples of {a} or {b}.",
            f"def sum_multiples(n):\n    return sum(i for i in range(n) if i % {a} == 0 or i % {b} == 0)\n",
            [((n,), expect(n)) for n in rng.sample(range(1, 300), 3)])


def reverse_words(rng):
    case = rng.choice(["", "upper", "lower"])
    suffix = f" and return it in {case} case" if case else ""
    call = f".{case}()" if case else ""
    def expect(s):
        out = s.split(" ")
        out.reverse()
        res = " ".join(out)
        return res.upper() if case == "upper" else res.lower() if case == "lower" else res
    inputs = [" ".join(w.capitalize() if rng.random() < 0.3 else w for w in _sentence(rng).split()) for _ in range(3)]
    return ("reverse_words",
            f"Write a function to reverse the order of the words of a string whose words are separated by single spaces{suffix}.",
            f"def reverse_words(s):\n    return ' '.join(s.split(' ')[::-1]){call}\n",
            [((s,), expect(s)) for s in inputs])


def count_letters(rng):
    letters = "".join(sorted(rng.sample("abcdefghijklmnopqrstuvwxyz", rng.randint(2, 5))))
    def expect(s):
        return sum(s.lower().count(c) for c in letters)
    pool = letters + letters.upper() + "abcdefghijklmnopqrstuvwxyz "
    inputs = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 16))) for _ in range(3)]
    return ("count_letters",
            f"Write a function to count how many characters of a string are one of the letters '{letters}', ignoring case.",
            f"def count_letters(s):\n    return sum(1 for c in s.lower() if c in '{letters}')\n",
            [((s,), expect(s)) for s in inputs])


def fib_mod(rng):
    m = rng.randint(7, 1000)
    def expect(n):
        a, b = 0, 1
        for _ in range(n):
            a, b = b, a + b  # exact big integers, reduced only at the end
        return a % m
    return ("fib_mod",
            f"Write a function to find the n-th Fibonacci number modulo {m}, where fib(0) = 0 and fib(1) = 1.",
            f"def fib_mod(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, (a + b) % {m}\n    return a % {m}\n",
            [((n,), expect(n)) for n in rng.sample(range(0, 90), 3)])


def filter_divisible(rng):
    k = rng.randint(2, 9)
    what = "even numbers" if k == 2 else f"numbers divisible by {k}"
    return ("filter_divisible",
            f"Write a function to return the {what} of a list of integers, in their original order.",
            f"def filter_divisible(nums):\n    return [x for x in nums if x % {k} == 0]\n",
            [((xs,), list(filter(lambda x: x - k * (x // k) == 0, xs)))
             for xs in ([rng.choice([k * rng.randint(-5, 5), rng.randint(-20, 20)]) for _ in range(rng.randint(0, 8))]
                        for _ in range(3))])


def max_affine(rng):
    a = rng.choice([v for v in range(-5, 6) if v])
    b = rng.randint(-10, 10)
    expr = {1: "x", -1: "-x"}.get(a, f"{a}*x") + (f" + {b}" if b > 0 else f" - {-b}" if b < 0 else "")
    return ("max_affine",
            f"Write a function to find the maximum of {expr} over the elements x of a non-empty list of integers.",
            f"def max_affine(nums):\n    return max({a} * x{f' + {b}' if b > 0 else f' - {-b}' if b < 0 else ''} for x in nums)\n",
            [((xs,), sorted(a * x + b for x in xs)[-1]) for xs in (_ints(rng, rng.randint(1, 7)) for _ in range(3))])


def rotate_string(rng):
    k, side = rng.randint(1, 6), rng.choice(["left", "right"])
    def expect(s):
        out = s
        for _ in range(k if s else 0):
            out = out[1:] + out[:1] if side == "left" else out[-1:] + out[:-1]
        return out
    body = "s[k:] + s[:k]" if side == "left" else "s[len(s) - k:] + s[:len(s) - k]"
    return ("rotate_string",
            f"Write a function to rotate a string to the {side} by {k} characters, wrapping around "
            f"(the empty string stays empty).",
            f"def rotate_string(s):\n    if not s:\n        return s\n    k = {k} % len(s)\n    return {body}\n",
            [((s,), expect(s)) for s in ("".join(rng.choice("abcdefgh") for _ in range(rng.randint(0, 9))) for _ in range(3))])


def run_length(rng):
    count_first = rng.random() < 0.5
    def expect(s):
        out, i = "", 0
        while i < len(s):
            j = i
            while j < len(s) and s[j] == s[i]:
                j += 1
            out += f"{j - i}{s[i]}" if count_first else f"{s[i]}{j - i}"
            i = j
        return out
    fmt, ex = ("its length followed by the character", "'aaab' -> '3a1b'") if count_first else \
              ("the character followed by its length", "'aaab' -> 'a3b1'")
    piece = "f'{len(list(g))}{c}'" if count_first else "f'{c}{len(list(g))}'"
    return ("run_length",
            f"Write a function to run-length encode a string, writing each run of equal characters as {fmt} (e.g. {ex}).",
            f"from itertools import groupby\n\ndef run_length(s):\n    return ''.join({piece} for c, g in groupby(s))\n",
            [((s,), expect(s)) for s in (_runs(rng) for _ in range(3))])


def digit_power_sum(rng):
    p = rng.randint(1, 4)
    def expect(n):
        total = 0
        while True:
            total += (n % 10) ** p
            n //= 10
            if n == 0:
                return total
    power = {1: "", 2: "squares of the ", 3: "cubes of the ", 4: "fourth powers of the "}[p]
    return ("digit_power_sum",
            f"Write a function to compute the sum of the {power}digits of a non-negative integer.",
            f"def digit_power_sum(n):\n    return sum(int(d) ** {p} for d in str(n))\n",
            [((n,), expect(n)) for n in rng.sample(range(0, 100000), 3)])


def count_pairs(rng):
    t = rng.randint(-5, 15)
    def expect(xs):
        c = Counter(xs)
        same = c[t // 2] * (c[t // 2] - 1) // 2 if t % 2 == 0 else 0
        return same + sum(c[x] * c[t - x] for x in c if x < t - x)
    return ("count_pairs",
            f"Write a function to count the pairs of positions i < j in a list of integers whose elements sum to {t}.",
            f"def count_pairs(nums):\n    n = len(nums)\n"
            f"    return sum(1 for i in range(n) for j in range(i + 1, n) if nums[i] + nums[j] == {t})\n",
            [((xs,), expect(xs)) for xs in (_ints(rng, rng.randint(2, 9), t // 2 - 5, t // 2 + 5) for _ in range(3))])


def kth_smallest(rng):
    k = rng.randint(1, 3)
    def expect(xs):
        rest = list(xs)
        for _ in range(k - 1):
            m = min(rest)
            rest = [x for x in rest if x != m]
        return min(rest)
    cases = []
    while len(cases) < 3:
        xs = _ints(rng, rng.randint(k, 8))
        if len(set(xs)) >= k:
            cases.append(((xs,), expect(xs)))
    return ("kth_smallest",
            f"Write a function to find the {ORDINALS[k]} distinct value of a list of integers "
            f"(it has at least {k} distinct values).",
            f"def kth_smallest(nums):\n    return sorted(set(nums))[{k - 1}]\n",
            cases)


def base_palindrome(rng):
    b = rng.randint(2, 9)
    def expect(n):
        digits = ""
        while True:
            digits = str(n % b) + digits
            n //= b
            if n == 0:
                return digits == "".join(reversed(digits))
    cases = [rng.randint(0, 5000) for _ in range(2)]
    pal = rng.randint(1, 9) % b or 1
    cases.append(pal * b * b + rng.randint(0, b - 1) * b + pal)  # a 3-digit palindrome in base b
    return ("is_base_palindrome",
            f"Write a function to check whether a non-negative integer is a palindrome when written in base {b}.",
            f"def is_base_palindrome(n):\n    digits = []\n    while True:\n        digits.append(n % {b})\n        n //= {b}\n"
            f"        if n == 0:\n            break\n    return digits == digits[::-1]\n",
            [((n,), expect(n)) for n in cases])


def caesar(rng):
    k = rng.randint(1, 25)
    alpha = "abcdefghijklmnopqrstuvwxyz"
    table = str.maketrans(alpha, alpha[k:] + alpha[:k])
    return ("caesar_shift",
            f"Write a function to encrypt a lowercase string with a Caesar cipher that shifts every letter {k} places "
            f"forward in the alphabet, wrapping from 'z' to 'a'; other characters stay unchanged.",
            f"def caesar_shift(s):\n    return ''.join(chr((ord(c) - 97 + {k}) % 26 + 97) if 'a' <= c <= 'z' else c for c in s)\n",
            [((s,), s.translate(table)) for s in (_sentence(rng) for _ in range(3))])


def product_mod(rng):
    m = rng.randint(5, 997)
    return ("product_mod",
            f"Write a function to compute the product of the elements of a list of integers modulo {m} "
            f"(the product of an empty list is 1).",
            f"def product_mod(nums):\n    result = 1\n    for x in nums:\n        result = (result * x) % {m}\n"
            f"    return result % {m}\n",
            [((xs,), math.prod(xs) % m) for xs in (_ints(rng, rng.randint(0, 7), -30, 30) for _ in range(3))])


def exactly_k_times(rng):
    k = rng.randint(1, 3)
    times = {1: "exactly once", 2: "exactly twice", 3: "exactly three times"}[k]
    def expect(xs):
        out = []
        for x in xs:
            if x not in out and sum(1 for y in xs if y == x) == k:
                out.append(x)
        return out
    return ("exactly_k_times",
            f"Write a function to return the distinct elements that appear {times} in a list, in order of first appearance.",
            f"from collections import Counter\n\ndef exactly_k_times(nums):\n    counts = Counter(nums)\n"
            f"    return [x for x in dict.fromkeys(nums) if counts[x] == {k}]\n",
            [((xs,), expect(xs)) for xs in (_ints(rng, rng.randint(3, 12), 0, 4) for _ in range(3))])


def longest_run(rng):
    c = rng.choice("abc")
    def expect(s):
        return max([len(part) for part in "".join(ch if ch == c else " " for ch in s).split()], default=0)
    return ("longest_run",
            f"Write a function to find the length of the longest run of consecutive '{c}' characters in a string "
            f"(0 if there is none).",
            f"def longest_run(s):\n    best = cur = 0\n    for ch in s:\n        cur = cur + 1 if ch == '{c}' else 0\n"
            f"        best = max(best, cur)\n    return best\n",
            [((s,), expect(s)) for s in (_runs(rng) for _ in range(3))])


TEMPLATES: dict[str, Callable] = {f.__name__: f for f in (
    sum_multiples, reverse_words, count_letters, fib_mod, filter_divisible, max_affine, rotate_string, run_length,
    digit_power_sum, count_pairs, kth_smallest, base_palindrome, caesar, product_mod, exactly_k_times, longest_run)}


def make_task(seed: int, index: int, template: str | None = None) -> CodeTask:
    """Task number `index` of the stream for `seed` (template drawn uniformly unless given)."""
    rng = random.Random(f"procedural_code/{seed}/{index}")
    name = template or rng.choice(sorted(TEMPLATES))
    func, text, code, cases = TEMPLATES[name](rng)
    return CodeTask(template=name, func=func, text=text, code=code, cases=tuple(cases))


def iter_tasks(seed: int) -> Iterator[CodeTask]:
    """Endless deterministic stream of tasks; exact repeats of (text, tests) are skipped."""
    seen, index = set(), 0
    while True:
        task = make_task(seed, index)
        index += 1
        key = (task.text, task.tests)
        if key not in seen:
            seen.add(key)
            yield task
