"""The grader on a hand-written table of (generation, gold, expected verdict) in the five benchmarks' styles."""

from __future__ import annotations

import threading

import pytest

from hipo.eval.grading import answers_match, extract_answer, is_equivalent

# (generation, gold, expected). Comments name the benchmark style or the trap being tested.
CASES: list[tuple[str, str, bool]] = [
    # --- GSM8K: integer golds after ####, commas, currency, units, last-number fallback
    ("She makes 9 * 2 = $18 every day.\n#### 18", "18", True),
    ("So the total is \\boxed{18}.", "18", True),
    ("So the total is \\boxed{\\$18}.", "18", True),
    ("The answer is 18 dollars.", "18", True),
    ("The answer is $18.", "18", True),
    ("The final answer is 70,000.", "70000", True),
    ("Thus \\boxed{70,000}", "70000", True),
    ("Thus \\boxed{70000}", "70,000", True),
    ("Thus \\boxed{1,000,000}", "1000000", True),
    ("She has 3 apples and then 5 more, so 8 apples in total", "8", True),
    ("She has 3 apples and then 5 more, so 8 apples in total", "5", False),
    ("\\boxed{18.00}", "18", True),
    ("\\boxed{18.5}", "18", False),
    ("\\boxed{-3}", "3", False),
    ("\\boxed{-3}", "-3", True),
    ("\\boxed{18 \\text{ dollars}}", "18", True),
    ("Answer: 42", "42", True),
    ("**Final Answer:** 42", "42", True),
    ("I computed 12 first. Then 7. #### 7", "7", True),
    # --- MATH500: LaTeX answers
    (
        "so $r=3$, $\\theta=\\pi/2$: \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}",
        "\\left( 3, \\frac{\\pi}{2} \\right)",
        True,
    ),
    ("\\boxed{(3, \\pi/2)}", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("\\boxed{\\dfrac{14}{3}}", "\\frac{14}{3}", True),
    ("\\boxed{4.6667}", "\\frac{14}{3}", False),
    ("\\boxed{0.5}", "\\frac{1}{2}", True),
    ("\\boxed{\\frac12}", "0.5", True),
    ("\\boxed{90^\\circ}", "90^\\circ", True),
    ("\\boxed{90}", "90^\\circ", True),
    ("\\boxed{3\\sqrt{13}}", "3\\sqrt{13}", True),
    ("\\boxed{\\sqrt{117}}", "3\\sqrt{13}", True),
    ("\\boxed{\\text{Evelyn}}", "\\text{Evelyn}", True),
    ("\\boxed{Evelyn}", "\\text{Evelyn}", True),
    ("\\boxed{Evenly}", "\\text{Evelyn}", False),
    ("\\boxed{6-5i}", "6 - 5i", True),
    ("\\boxed{x = 5}", "x=5", True),
    ("\\boxed{5}", "x=5", True),
    ("\\boxed{-2, 1}", "1,-2", True),
    ("\\boxed{x^5 - x^4 + x^3 - x^2 + x - 1}", "x^5 - x^4 + x^3 - x^2 + x - 1", True),
    ("\\boxed{x^5 + x^4 + x^3 - x^2 + x - 1}", "x^5 - x^4 + x^3 - x^2 + x - 1", False),
    ("\\boxed{3, 5, 7}", "3, 5, 7", True),
    ("\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", True),
    ("\\boxed{\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", False),
    ("First I guessed \\boxed{3}, but correcting the sign: \\boxed{-3}", "-3", True),  # the last box counts
    ("First I guessed \\boxed{-3}, but correcting the sign: \\boxed{3}", "-3", False),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt 3}{2}", True),
    # --- Minerva: decimals, scientific notation, units
    ("the image is \\boxed{1.6} \\mathrm{~cm}", "1.6", True),
    ("\\boxed{1.6 \\mathrm{~cm}}", "1.6", True),
    ("\\boxed{4.5 \\times 10^{33}}", "4.5e33", True),
    ("\\boxed{4.4 \\times 10^{33}}", "4.5e33", False),
    ("\\boxed{4.5e33}", "4.5e33", True),
    ("\\boxed{41.8^{\\circ}}", "41.8", True),
    # --- AIME: integers 000-999, the box often nested in text
    ("Adding them up, we get $115+256=\\boxed{371}$.", "371", True),
    ("\\boxed{\\textbf{(113) }}", "113", True),
    ("The answer is \\boxed{204}", "204", True),
    ("The answer is \\boxed{240}", "204", False),
    ("\\boxed{033}", "33", True),
    # --- Gaokao: sets, intervals, multiple choice, percents, mixed numbers, several values
    ("\\boxed{[-2, 1)}", "\\{x|-2\\leq x < 1\\}", True),
    ("\\boxed{(-2, 1)}", "\\{x|-2\\leq x < 1\\}", False),
    ("\\boxed{(-\\infty,0)\\cup(0,1)\\cup(1,\\infty)}", "(-\\infty, 0)\\cup(0,1)\\cup(1,+\\infty)", True),
    ("\\boxed{(-\\infty,1)\\cup(1,\\infty)}", "(-\\infty, 0)\\cup(0,1)\\cup(1,+\\infty)", False),
    ("\\boxed{\\{5,3,1\\}}", "\\{1,3,5\\}", True),
    ("\\boxed{\\{1,3\\}}", "\\{1,3,5\\}", False),
    ("\\boxed{[2, +\\infty)}", "[2,+\\infty)", True),
    ("The correct option is \\boxed{C}", "C", True),
    ("The correct option is \\boxed{(C)}", "C", True),
    ("The correct option is \\boxed{B}", "C", False),
    ("\\boxed{1.1\\%}", "1.1\\%", True),
    ("\\boxed{1.1}", "1.1\\%", True),
    ("\\boxed{2\\frac58}", "2\\frac58", True),
    ("\\boxed{2.625}", "2\\frac58", True),
    ("\\boxed{-\\frac{\\sqrt{2}}{3}}", "-\\frac{\\sqrt{2}}{3}", True),
    ("\\boxed{\\frac{\\sqrt{2}}{3}}", "-\\frac{\\sqrt{2}}{3}", False),
    ("\\boxed{5 \\text{ or } 9}", "5 or 9", True),
    ("\\boxed{y = 5 - 2x}", "y=-2x+5", True),
    ("\\boxed{1-\\sqrt{3}i}", "-1-\\sqrt{3}", False),
    ("\\boxed{b > a > c}", "b > a > c", True),
    ("\\boxed{a > b > c}", "b > a > c", False),
    ("\\boxed{.48}", ".48", True),
    ("\\boxed{0.48}", ".48", True),
    # --- no answer, truncated output, empty text
    ("I am not sure how to solve this.", "5", False),
    ("The value is \\boxed{\\frac{1}{", "\\frac{1}{2}", False),  # truncated box; the fallback "1" is wrong
    ("", "5", False),
]


@pytest.mark.parametrize(("generation", "gold", "expected"), CASES)
def test_grading_table(generation: str, gold: str, expected: bool) -> None:
    assert is_equivalent(generation, gold) is expected


def test_table_size_and_balance() -> None:
    """The table is large enough and holds both verdicts (so neither 'always True' nor 'always False' passes)."""
    assert len(CASES) >= 60
    positives = sum(expected for _, _, expected in CASES)
    assert 20 <= positives <= len(CASES) - 15


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{\\frac{a}{\\sqrt{b^{2}}}} done", "\\frac{a}{\\sqrt{b^{2}}}"),  # nested braces
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("\\fbox{7}", "7"),
        ("\\boxed 5.", "5"),
        ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),  # escaped braces are not grouping braces
        ("#### 1,234\n", "1,234"),
        ("The answer is $\\frac{3}{4}$. Next, we check.", "\\frac{3}{4}"),
        ("The final answer is 12 apples.", "12"),
        ("no digits here", None),
        ("a truncated \\boxed{12", "12"),  # no complete box: falls back to the last number
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_extract_answer_without_number_fallback() -> None:
    assert extract_answer("there were 12 cats", last_number_fallback=False) is None
    assert extract_answer("there were 12 cats", last_number_fallback=True) == "12"


def test_answers_match_is_direct() -> None:
    """``answers_match`` compares extracted answers, without extraction (a bare fraction is not a generation)."""
    assert answers_match("\\frac{2}{4}", "0.5")
    assert not answers_match("", "0.5")


def test_grading_runs_off_the_main_thread() -> None:
    """math-verify's signal-based timeouts are disabled: grading works in a worker thread."""
    results: list[bool] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(is_equivalent("\\boxed{\\frac{1}{3}}", "\\dfrac{2}{6}"))
            results.append(is_equivalent("\\boxed{0.3}", "\\frac{1}{3}"))
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert not errors
    assert results == [True, False]
