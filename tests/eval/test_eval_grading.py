"""The grader on hand-written tables of (generation, gold, expected verdict) in the five benchmarks' styles.

``CASES`` are graded as LaTeX (``expression``) answers: an explicit final answer is required. ``NUMERIC_CASES``
(GSM8K, AIME) may fall back to the last number, but only without any final-answer marker. ``HONEST_CASES`` are
the traps of the last-number guess, each with the verdict a person would give.
"""

from __future__ import annotations

import threading

import pytest

from hipo.eval.grading import answers_match, equation_value, extract_answer, extract_final_answer, is_equivalent

# (generation, gold, expected). Comments name the benchmark style or the trap being tested.
CASES: list[tuple[str, str, bool]] = [
    # --- GSM8K: integer golds after ####, commas, currency, units
    ("She makes 9 * 2 = $18 every day.\n#### 18", "18", True),
    ("So the total is \\boxed{18}.", "18", True),
    ("So the total is \\boxed{\\$18}.", "18", True),
    ("The answer is 18 dollars.", "18", True),
    ("The answer is $18.", "18", True),
    ("The final answer is 70,000.", "70000", True),
    ("Thus \\boxed{70,000}", "70000", True),
    ("Thus \\boxed{70000}", "70,000", True),
    ("Thus \\boxed{1,000,000}", "1000000", True),
    ("She has 3 apples and then 5 more, so 8 apples in total", "8", False),  # no stated answer: LaTeX golds never guess
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


# (generation, gold, expected) for bare-number benchmarks: the last number counts only when nothing else is stated
NUMERIC_CASES: list[tuple[str, str, bool]] = [
    ("She has 3 apples and then 5 more, so 8 apples in total", "8", True),
    ("She has 3 apples and then 5 more, so 8 apples in total", "5", False),
    ("The answer is 12 apples.", "12", True),
    ("Each ticket costs $5, so 9 tickets cost $45.", "45", True),
    ("The answer is $1,250.", "1250", True),
    ("I computed 12 first. Then 7. #### 7", "7", True),
    # a label is not a quantity: "Step 3" / "Step 2" name steps
    ("She makes 9 * 2 = $18 every day.\nStep 3", "3", False),  # cut off at a step heading: no answer stated
    ("She makes 9 * 2 = $18 every day.\n\n**Step 3:**", "18", False),  # ... not even the number before it
    ("Step 1: 4 + 4 = 8 cookies.\nStep 2: 8 * 2 = 16, so 16 cookies are left after Step 2", "2", False),
    ("Step 1: 4 + 4 = 8 cookies.\nStep 2: 8 * 2 = 16, so 16 cookies are left after Step 2", "16", True),
    # a fraction or a power is one value, not its last digit
    ("so the probability is $S = \\frac{1}{2}$", "2", False),
    ("so the probability is $S = \\frac{1}{2}$", "0.5", True),
    ("There are 2^{10} ways.", "10", False),
    ("There are 2^{10} ways.", "1024", True),
    # a final-answer marker that yields nothing forbids the guess
    ("The value is \\boxed{1", "1", False),  # truncated box
]

# (generation, gold, answer format, expected): the last-number traps and answers stated as equations
HONEST_CASES: list[tuple[str, str, str, bool]] = [
    ("Therefore $S = \\frac{1}{2}$.", "2", "expression", False),  # no stated answer, and never "2"
    ("The answer is $S = \\frac{1}{2}$.", "2", "expression", False),
    ("The answer is $S = \\frac{1}{2}$.", "\\frac{1}{2}", "expression", True),  # graded on the right-hand side
    ("The answer is $S = \\frac{1}{2}$.", "0.5", "expression", True),
    ("So $x = 5$. The answer is $x = 5$.", "5", "expression", True),
    ("\\boxed{x = 5}", "5", "expression", True),
    ("\\boxed{x = 5}", "x = 5", "expression", True),
    ("\\boxed{x = 2 + 3 = 5}", "5", "expression", True),
    ("\\boxed{y = 7}", "5", "expression", False),
    ("The answer is x = 5", "5", "numeric", True),
    # MATH answers without a box: a count or a year in the last sentence is not an answer
    ("We must choose 3 people for the committee, from a group of 6.", "6", "expression", False),
    ("There are 4 cases to check, and we have checked 3 of them.", "3", "expression", False),
    ("None of the values worked, just as in the 2008 contest.", "2008", "expression", False),
    ("This identity was first proved in 1837.", "1837", "expression", False),
    # numbers in a sentence after the box do not count
    ("\\boxed{12}. This took us 3 steps.", "12", "expression", True),
    ("\\boxed{12}. This took us 3 steps.", "3", "expression", False),
    ("\\boxed{12}. This took us 3 steps.", "3", "numeric", False),
    # units after the stated answer
    ("The answer is $5\\,\\text{cm}$.", "5", "expression", True),
    ("The answer is 5 cm.", "5", "expression", True),
    ("The answer is 12 apples.", "12", "expression", True),
    ("The final answer is \\boxed{3 \\text{ hours}}.", "3", "numeric", True),
    ("Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", "\\frac{3}{4}", "expression", True),
]


@pytest.mark.parametrize(("generation", "gold", "expected"), CASES)
def test_grading_table(generation: str, gold: str, expected: bool) -> None:
    assert is_equivalent(generation, gold) is expected


@pytest.mark.parametrize(("generation", "gold", "expected"), NUMERIC_CASES)
def test_numeric_grading_table(generation: str, gold: str, expected: bool) -> None:
    assert is_equivalent(generation, gold, answer_format="numeric") is expected


@pytest.mark.parametrize(("generation", "gold", "answer_format", "expected"), HONEST_CASES)
def test_no_guessing_and_equations(generation: str, gold: str, answer_format: str, expected: bool) -> None:
    assert is_equivalent(generation, gold, answer_format=answer_format) is expected


@pytest.mark.parametrize(
    ("generation", "answer_format", "expected"),
    [
        ("We must choose 3 people for the committee, from a group of 6.", "expression", None),
        ("We must choose 3 people for the committee, from a group of 6.", "numeric", "6"),
        ("She makes 9 * 2 = $18 every day.\nStep 3", "numeric", None),
        ("The value is \\boxed{1", "numeric", None),
        ("so $S = \\frac{1}{2}$", "numeric", "\\frac{1}{2}"),
        ("1. Add 2 and 3.\n2. Double it: 10", "numeric", "10"),
    ],
)
def test_no_answer_is_none(generation: str, answer_format: str, expected: str | None) -> None:
    """What the runner records as the extracted answer (None: counted as "no answer")."""
    assert extract_final_answer(generation, answer_format) == expected


def test_unknown_answer_format_is_refused() -> None:
    with pytest.raises(ValueError, match="numeric, expression"):
        is_equivalent("\\boxed{1}", "1", answer_format="number")


@pytest.mark.parametrize(
    ("answer", "value"),
    [
        ("S = \\frac{1}{2}", "\\frac{1}{2}"),
        ("x = 2 + 3 = 5", "5"),
        ("x = 5 \\text{ or } x = 9", "5 \\text{ or } 9"),
        ("a \\leq 3", "a \\leq 3"),
        ("(r, \\theta) = (3, \\pi)", "(3, \\pi)"),
    ],
)
def test_equation_value(answer: str, value: str) -> None:
    assert equation_value(answer) == value


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
        ("a truncated \\boxed{12", None),  # no complete box, and a started box forbids the last-number guess
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected
    assert extract_answer(text, last_number_fallback=True) == expected


def test_extract_answer_without_number_fallback() -> None:
    """The fallback is opt-in (the ``llm`` segmenter reads the original answer without it)."""
    assert extract_answer("there were 12 cats") is None
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
