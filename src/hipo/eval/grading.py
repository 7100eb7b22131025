"""The grader: final-answer extraction, then equivalence with ``math-verify`` (numbers, LaTeX, intervals, sets).

``is_equivalent(generation, gold, answer_format)`` is the public entry point: ``extract_final_answer`` finds the
stated answer (a generation without one is "no answer" and never matches), then ``answers_match`` compares. An
answer stated as an equation (``S = \\frac{1}{2}``, ``x = 5``) is compared on its right-hand side unless the gold
is itself an equation. Comparison runs in three steps:

1. a canonical string comparison (whitespace, ``$``, ``\\text{}``, ``\\left``/``\\right``, ``\\%``, ``^\\circ``,
   thousands separators removed; case-insensitive), which settles text answers and exact matches;
2. multiple-choice golds (a single letter ``A``…``K``) and text golds (words such as ``Evelyn``) are decided by
   step 1 alone: symbolic parsing would read a word as a product of single-letter variables;
3. otherwise both sides are parsed by ``math_verify.parse`` and compared by ``math_verify.verify`` (gold first).

math-verify's own timeouts use ``signal.alarm``, which only works on the main thread; they are disabled here so
the grader also runs in thread pools and dataloader workers. Inputs longer than ``MAX_SYMBOLIC_CHARS`` skip the
symbolic step so that a pathological generation cannot stall the evaluation.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from hipo.eval.extraction import (
    ANSWER_FORMATS,
    boxed_contents,
    check_answer_format,
    extract_answer,
    extract_final_answer,
    last_boxed,
)

__all__ = [
    "ANSWER_FORMATS",
    "answers_match",
    "canonical_string",
    "equation_value",
    "extract_answer",
    "extract_final_answer",
    "gold_problem",
    "is_equivalent",
    "normalize_answer",
]

log = logging.getLogger(__name__)

MAX_SYMBOLIC_CHARS = 1000
_EXTRACTION_CONFIG = (LatexExtractionConfig(), ExprExtractionConfig())
_SCIENTIFIC = re.compile(r"(?<![\w.])(-?\d+(?:\.\d*)?)[eE]([+-]?\d+)(?![\w.])")
_SET_BUILDER = re.compile(r"^\\\{\s*[a-zA-Z]\s*(?:\||\\mid)\s*(.+?)\s*\\\}$")
_CHOICE = re.compile(r"^\(?([A-K])\)?(?:[\s.:].*)?$")
_NUMERIC_IN_TEXT = re.compile(r"\\(?:text|textbf|mathbf|mathrm)\s*\{\s*\(?\s*(-?[\d.,]+)\s*\)?\s*\}")
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox|operatorname)\s*\{([^{}]*)\}")
_EQUALS = re.compile(r"(?<![<>!=\\])=(?!=)")  # an equals sign, not part of <=, >=, !=, ==
_NAME = r"(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?[\w\\]+\}?)?(?:\^\{?[\w\\]+\}?)?(?:\([A-Za-z]\))?"
# "x =" at the start or after a list separator: "x = 5 or x = 9" -> "5 or 9"
_NAMED_EQUALS = re.compile(rf"(^|[,;]|\bor\b|\band\b|\\text\{{\s*or\s*\}}|\\quad)\s*{_NAME}\s*(?<![<>!\\])=(?!=)")
_BARE_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")


def normalize_answer(answer: str) -> str:
    """Light, meaning-preserving clean-up of an answer string before comparison.

    Removes math delimiters (``$…$``, ``\\(…\\)``, ``\\[…\\]``) and a wrapping ``\\boxed{}``, maps ``\\dfrac`` and
    ``\\tfrac`` to ``\\frac``, unwraps a number in ``\\textbf{(…)}``, rewrites ``4.5e33`` as
    ``4.5\\times10^{33}`` and a set-builder ``\\{x | cond\\}`` as ``cond``.
    """
    text = answer.strip()
    if boxed_contents(text):
        text = last_boxed(text) or ""
    text = text.replace("\\$", "").replace("$", "")
    text = re.sub(r"^\\\(|\\\)$|^\\\[|\\\]$", "", text).strip()
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = _NUMERIC_IN_TEXT.sub(r"\1", text)  # AIME's \textbf{(073)} -> 073
    text = _SCIENTIFIC.sub(r"\1\\times10^{\2}", text)
    builder = _SET_BUILDER.match(text)
    if builder:
        text = builder.group(1)
    return text.strip().rstrip(".").strip()


def canonical_string(answer: str) -> str:
    """A comparison key: lower case, no whitespace, spacing commands, text wrappers, units of angle or percent."""
    text = normalize_answer(answer)
    previous = None
    while previous != text:  # unwrap nested \text{\textbf{...}}
        previous = text
        text = _TEXT_WRAPPER.sub(r"\1", text)
    for token in ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\ ", "\\displaystyle"):
        text = text.replace(token, "")
    text = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|°|\\%|%", "", text)
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)  # thousands separators
    text = re.sub(r"\s+", "", text).lower()
    return text.rstrip(".")


def equation_value(answer: str) -> str:
    """The value an equation states: ``S = \\frac{1}{2}`` -> ``\\frac{1}{2}``; ``x = 2 + 3 = 5`` -> ``5``.

    ``x = 5 or x = 9`` -> ``5 or 9`` (each ``name =`` after a list separator is dropped first); an answer without
    an equals sign is returned unchanged.
    """
    text = normalize_answer(answer)
    if not _EQUALS.search(text):
        return answer
    text = _NAMED_EQUALS.sub(lambda match: match.group(1), text).strip()
    parts = _EQUALS.split(text)
    return parts[-1].strip() if len(parts) > 1 else text


def _choice_letter(answer: str) -> str | None:
    """The option letter of a multiple-choice answer such as ``C``, ``(C)`` or ``\\text{(C)} 12``; else None."""
    plain = _TEXT_WRAPPER.sub(r"\1", normalize_answer(answer)).strip()
    match = _CHOICE.match(plain)
    return match.group(1) if match else None


def _is_text_answer(answer: str) -> bool:
    """True for word answers (``Evelyn``, ``\\text{a necessary condition}``) that symbolic parsing would mangle."""
    plain = _TEXT_WRAPPER.sub(r"\1", normalize_answer(answer)).strip()
    if not re.fullmatch(r"[A-Za-z][A-Za-z\s',.\-]*", plain):
        return False
    return any(len(word) >= 4 for word in re.findall(r"[A-Za-z]+", plain))


@functools.lru_cache(maxsize=8192)
def _parse(answer: str) -> tuple[Any, ...]:
    """math-verify's parse of one normalized answer in math mode, without signal-based timeouts (thread-safe)."""
    return tuple(parse(f"${answer}$", extraction_config=_EXTRACTION_CONFIG, parsing_timeout=None))


def answers_match(predicted: str, gold: str) -> bool:
    """Whether an already-extracted answer equals the gold answer (see the module docstring for the steps).

    Args:
        predicted: the model's final answer, e.g. ``"0.5"`` (not the whole generation; see ``is_equivalent``).
        gold: the reference answer, e.g. ``"\\frac{1}{2}"``.
    """
    if _EQUALS.search(predicted) and not _EQUALS.search(normalize_answer(gold)):
        predicted = equation_value(predicted)  # "S = \frac{1}{2}" is graded on "\frac{1}{2}"
    gold_key, pred_key = canonical_string(gold), canonical_string(predicted)
    if not gold_key or not pred_key:
        return False
    if gold_key == pred_key:
        return True
    gold_choice = _choice_letter(gold)
    if gold_choice is not None and len(canonical_string(gold)) <= 3:
        return _choice_letter(predicted) == gold_choice
    if _is_text_answer(gold):
        return False
    gold_norm, pred_norm = normalize_answer(gold), normalize_answer(predicted)
    if len(gold_norm) > MAX_SYMBOLIC_CHARS or len(pred_norm) > MAX_SYMBOLIC_CHARS:
        return False
    try:
        gold_parsed, pred_parsed = _parse(gold_norm), _parse(pred_norm)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(list(gold_parsed), list(pred_parsed), timeout_seconds=None))
    except Exception as error:  # a grader must never crash an evaluation: an unparsable answer is wrong
        log.debug("math-verify failed on gold=%r prediction=%r: %s", gold, predicted, error)
        return False


def is_equivalent(prediction_text: str, gold_answer: str, answer_format: str = "expression") -> bool:
    """Whether a full generation's final answer equals ``gold_answer``.

    Args:
        prediction_text: the whole generation; its final answer is found by ``extract_final_answer`` (last
            ``\\boxed{}``, ``####``, "the answer is …"; the last number only for ``numeric`` answer formats).
        gold_answer: the reference answer (LaTeX or plain text).
        answer_format: the benchmark's answer format (``numeric`` or ``expression``, see ``ANSWER_FORMATS``).

    Returns:
        True when an answer was found and it is equivalent to the gold answer.
    """
    extracted = extract_final_answer(prediction_text, answer_format)
    if extracted is None:
        return False
    return answers_match(extracted, gold_answer)


def _braces_balanced(text: str) -> bool:
    """Whether every unescaped ``{`` of ``text`` is closed, in order."""
    depth, index = 0, 0
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth < 0:
            return False
        index += 1
    return depth == 0


def gold_problem(gold: str, answer_format: str) -> str | None:
    """Why ``gold`` cannot be graded as a final answer in ``answer_format``; None when it can.

    A gold is refused when it holds a worked solution (a line break or ``####``), is empty once delimiters are
    removed, has unbalanced braces, or -- for ``numeric`` benchmarks -- is not a bare number (``1,000``, ``-3``,
    ``0.5``, ``\\$18``, ``\\textbf{(073)}`` are).
    """
    check_answer_format(answer_format)
    if "\n" in gold.strip() or "####" in gold:
        return "holds a worked solution, not a final answer"
    if not _braces_balanced(gold):
        return "has unbalanced braces"
    if not canonical_string(gold):
        return "is empty once math delimiters are removed"
    if answer_format == "numeric":
        bare = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", normalize_answer(gold).replace("\\$", "").replace("\\%", ""))
        if not _BARE_NUMBER.fullmatch(bare.strip().rstrip("%")):
            return "is not a bare number"
    return None
