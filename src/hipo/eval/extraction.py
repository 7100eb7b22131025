"""Final-answer extraction from a full generation: last ``\\boxed{}``, then ``####``, then "the answer is …".

The order of preference (first rule that finds something wins):

1. the last complete ``\\boxed{…}`` / ``\\fbox{…}`` (nested braces matched; an unterminated, truncated box is ignored),
   or ``\\boxed 5`` without braces;
2. the last ``#### <answer>`` line (GSM8K's reference style);
3. the last "the (final) answer is …" / "Final Answer: …" / "Answer: …" phrase, up to the end of its sentence;
4. only when asked (``last_number_fallback=True``, for benchmarks whose answers are bare numbers) and only when the
   text holds no final-answer marker at all (no box, not even a truncated one, no ``####``, no answer phrase): the
   last number that is not a label (``Step 3``, ``Case 2``, a ``3.`` list marker). A text whose last line is a
   bare ``Step 3`` heading was cut off mid-solution and has no answer.

Anything else is "no answer" (None): the grader counts it as such and never guesses.
"""

from __future__ import annotations

import re

ANSWER_FORMATS = ("numeric", "expression")
"""``numeric``: the gold is a bare number (GSM8K, AIME); ``expression``: LaTeX, sets, intervals, text (MATH)."""

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_HASH_ANSWER = re.compile(r"####\s*([^\n]+)")
_ANSWER_PHRASE = re.compile(
    r"(?:the\s+final\s+answer\s+is|the\s+answer\s+is|final\s+answer\s*[:：]|\banswer\s*[:：])\s*(?:[:：])?\s*([^\n]+)",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+")
# the fallback reads a LaTeX fraction or a power as one value ("\frac{1}{2}" is 1/2, not 2; "2^{10}" is not 10)
_VALUE = re.compile(
    r"-?\\[dt]?frac\s*(?:\{\s*-?\d+(?:\.\d+)?\s*\}\s*\{\s*\d+(?:\.\d+)?\s*\}|\d\d)"
    r"|-?\d+(?:\.\d+)?\s*\^\s*(?:\{\s*-?\d+\s*\}|\d)"
    rf"|{_NUMBER.pattern}"
)
_LEADING_NUMBER_WITH_WORDS = re.compile(r"^(-?\\?\$?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?)\s+[A-Za-z][A-Za-z\s]*$")
_LABEL_WORDS = r"step|part|case|question|problem|method|approach|option|solution|example|equation|eq\."
# a number that names a step or item rather than stating a quantity: "Step 3", "Case 2:", a "3." / "(3)" list marker
_LABEL_BEFORE = re.compile(rf"(?:\b(?:{_LABEL_WORDS})\s*#?\s*|^\s*\(?)$", re.IGNORECASE)
_LIST_MARKER_AFTER = re.compile(r"^(?:[.)]\s|\)|[.)]?\s*$)")
_TRAILING_LABEL = re.compile(rf"^[\s*#>-]*(?:{_LABEL_WORDS})\s*#?\s*\d+[\s*:.)]*$", re.IGNORECASE)


def _matching_brace(text: str, open_index: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_index`` (escaped ``\\{``/``\\}`` ignored), or None."""
    depth = 0
    index = open_index
    while index < len(text):
        char = text[index]
        if char == "\\":  # skip the escaped character (\{ or \} are literal braces, not grouping)
            index += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return None


def boxed_contents(text: str) -> list[str]:
    """The contents of every complete ``\\boxed{…}``/``\\fbox{…}`` in ``text``, in order of appearance.

    ``\\boxed 5`` (no braces) yields ``5``; a box whose closing brace is missing (a truncated generation) is skipped.
    """
    found: list[tuple[int, str]] = []
    for command in _BOX_COMMANDS:
        start = text.find(command)
        while start != -1:
            cursor = start + len(command)
            if text.startswith("{", cursor) or text[cursor:].lstrip(" ").startswith("{"):
                open_index = text.index("{", cursor)
                close = _matching_brace(text, open_index)
                if close is not None:
                    found.append((start, text[open_index + 1 : close]))
            elif text.startswith(" ", cursor):
                token = text[cursor:].split(maxsplit=1)
                if token:
                    found.append((start, token[0].rstrip("$.,")))
            start = text.find(command, cursor)
    return [content for _, content in sorted(found)]


def last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{…}`` in ``text`` (nested braces handled), or None."""
    contents = boxed_contents(text)
    return contents[-1].strip() if contents else None


def has_answer_marker(text: str) -> bool:
    """Whether ``text`` states (or starts stating) a final answer: a box (even truncated), ``####``, "answer is"."""
    return any(command in text for command in _BOX_COMMANDS) or "####" in text or bool(_ANSWER_PHRASE.search(text))


def _clean_phrase(phrase: str) -> str:
    """Trims an answer phrase: math delimiters, bold markers, a trailing period, and words after a number."""
    phrase = phrase.strip()
    inner = last_boxed(phrase)
    if inner is not None:
        return inner
    phrase = phrase.replace("**", "").strip()
    phrase = re.split(r"\.\s", phrase, maxsplit=1)[0]  # the first sentence only ("18. Next we ..." -> "18")
    phrase = re.sub(r"^\\\(|\\\)$|^\\\[|\\\]$", "", phrase).strip()
    # "$18$." / "$18." / "18 dollars." -> "18"
    phrase = phrase.rstrip(" .;,")
    if phrase.count("$") >= 2 and phrase.startswith("$"):
        phrase = phrase[1 : phrase.index("$", 1)]
    phrase = phrase.replace("$", "").strip().rstrip(" .;,")
    words = _LEADING_NUMBER_WITH_WORDS.match(phrase)
    if words:
        phrase = words.group(1).replace("\\", "").strip()
    return phrase


def _is_label(text: str, match: re.Match[str]) -> bool:
    """Whether the number ``match`` names a step or list item ("Step 3", "Case 2", a "3." line marker)."""
    line_start = text.rfind("\n", 0, match.start()) + 1
    before = text[line_start : match.start()]
    if not _LABEL_BEFORE.search(before):
        return False
    if before.strip(" (") == "":  # at the start of a line: a label only when a list marker follows ("3. ", "3)")
        return bool(_LIST_MARKER_AFTER.match(text[match.end() :]))
    return True


def last_number(text: str) -> str | None:
    """The last number of ``text`` that is not a label; None when there is none or the text ends on a label.

    A LaTeX fraction (``\\frac{1}{2}``) or a power (``2^{10}``) counts as one number.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and _TRAILING_LABEL.match(lines[-1]):
        return None  # "…\nStep 3": cut off before the next step, no answer stated
    for match in reversed(list(_VALUE.finditer(text))):
        if not _is_label(text, match):
            return match.group(0).replace(" ", "")
    return None


def extract_answer(text: str, last_number_fallback: bool = False) -> str | None:
    """The final answer stated in a generation, as a string (LaTeX kept), or None when there is none.

    Args:
        text: the full generated text (reasoning and answer).
        last_number_fallback: for bare-number answer formats (GSM8K, AIME): when the text holds no final-answer
            marker at all, return its last number (see the module docstring). Never use it for LaTeX answers.

    Returns:
        The answer string, e.g. ``"\\frac{1}{2}"`` from ``"… so \\boxed{\\frac{1}{2}}."``; None if nothing was found.
    """
    if not text:
        return None
    boxed = last_boxed(text)
    if boxed:
        return boxed
    hashes = _HASH_ANSWER.findall(text)
    if hashes:
        cleaned = _clean_phrase(hashes[-1])
        if cleaned:
            return cleaned
    phrases = _ANSWER_PHRASE.findall(text)
    if phrases:
        cleaned = _clean_phrase(phrases[-1])
        if cleaned:
            return cleaned
    if last_number_fallback and not has_answer_marker(text):
        return last_number(text)
    return None


def check_answer_format(answer_format: str) -> str:
    """``answer_format`` itself when it is one of ``ANSWER_FORMATS``; else ``ValueError`` listing them."""
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer format must be one of {', '.join(ANSWER_FORMATS)}, got {answer_format!r}")
    return answer_format


def extract_final_answer(text: str, answer_format: str) -> str | None:
    """The final answer of a generation for a benchmark whose golds have ``answer_format`` (see ``extract_answer``).

    Only ``numeric`` benchmarks fall back to the last number, and only when no final-answer marker is present.
    """
    return extract_answer(text, last_number_fallback=check_answer_format(answer_format) == "numeric")
