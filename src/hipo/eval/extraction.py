"""Final-answer extraction from a full generation: last ``\\boxed{}``, then ``####``, then "the answer is …".

The order of preference (first rule that finds something wins):

1. the last complete ``\\boxed{…}`` / ``\\fbox{…}`` (nested braces matched; an unterminated, truncated box is ignored),
   or ``\\boxed 5`` without braces;
2. the last ``#### <answer>`` line (GSM8K's reference style);
3. the last "the (final) answer is …" / "Final Answer: …" / "Answer: …" phrase, up to the end of its sentence;
4. optionally, the last number in the text (a fallback for models that never state an answer explicitly).
"""

from __future__ import annotations

import re

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_HASH_ANSWER = re.compile(r"####\s*([^\n]+)")
_ANSWER_PHRASE = re.compile(
    r"(?:the\s+final\s+answer\s+is|the\s+answer\s+is|final\s+answer\s*[:：]|\banswer\s*[:：])\s*(?:[:：])?\s*([^\n]+)",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+")
_LEADING_NUMBER_WITH_WORDS = re.compile(r"^(-?\\?\$?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?)\s+[A-Za-z][A-Za-z\s]*$")


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


def extract_answer(text: str, last_number_fallback: bool = True) -> str | None:
    """The final answer stated in a generation, as a string (LaTeX kept), or None when there is none.

    Args:
        text: the full generated text (reasoning and answer).
        last_number_fallback: when no explicit answer is found, return the last number in the text.

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
    if last_number_fallback:
        numbers = _NUMBER.findall(text)
        if numbers:
            return numbers[-1].replace(" ", "")
    return None
