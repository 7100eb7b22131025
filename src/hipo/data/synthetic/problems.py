"""A deterministic generator of integer arithmetic word problems, at two levels.

* ``multi_step`` (the default, the training data's): 2-4 steps with numbers up to a few hundred;
* ``one_step``: one addition, subtraction, multiplication or exact division of numbers up to 20, a level the
  embedded 135M model partly solves, so benchmark accuracy is off the floor (``benchmark=synthetic_easy``).

Each template draws numbers from a seeded ``random.Random`` and describes its solution as a list of steps whose
operands are literals or earlier step results, so a slip in one step can be propagated to the later ones.
Problems are assigned to a split by a hash of their question text (train 80 %, validation 10 %, test 10 % of the
hash space), so the splits are disjoint whatever the seeds.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

SPLIT_BUCKETS: dict[str, range] = {"train": range(0, 80), "validation": range(80, 90), "test": range(90, 100)}
OPS: dict[str, Callable[[int, int], int | None]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "×": lambda a, b: a * b,
    "÷": lambda a, b: a // b if b and a % b == 0 else None,
}
Operand = int | str  # an int literal, or "#k": the result of step k


@dataclass(frozen=True)
class Given:
    """A quantity stated in the question, e.g. ``Given("{v} notebooks", 4)`` -> "4 notebooks"."""

    template: str
    value: int

    def render(self, value: int | None = None) -> str:
        return self.template.format(v=self.value if value is None else value)


@dataclass(frozen=True)
class Step:
    """One solved step: ``left op right = result`` with a short description."""

    description: str
    op: str
    left: Operand
    right: Operand


@dataclass(frozen=True)
class ArithmeticProblem:
    """A word problem with its givens, solution steps and integer answer.

    Attributes:
        id: stable id (hash of the question).
        topic: template name.
        question: the problem text.
        ask: what is asked, as a noun phrase ("how much change Maya gets").
        givens: the quantities of the question, in order.
        steps: the solution (1 step at level one_step, 2-4 at multi_step); operands may refer to earlier results.
        answer: the gold integer answer.
    """

    id: str
    topic: str
    question: str
    ask: str
    givens: tuple[Given, ...]
    steps: tuple[Step, ...]
    answer: int


def evaluate(steps: Sequence[Step], override: dict[int, int] | None = None) -> list[tuple[int, int, int]] | None:
    """``(left, right, result)`` of each step; ``override[k]`` replaces step k's result (a slip) for later steps.

    Returns None when a step is undefined (a division with a remainder) or a value is negative.
    """
    results: list[tuple[int, int, int]] = []
    for index, step in enumerate(steps):
        left, right = (results[int(o[1:])][2] if isinstance(o, str) else o for o in (step.left, step.right))
        value = OPS[step.op](left, right)
        if value is None:
            return None
        if override and index in override:
            value = override[index]
        if value < 0:
            return None
        results.append((left, right, value))
    return results


NAMES = ["Maya", "Liam", "Ava", "Noah", "Zara", "Omar", "Ines", "Kenji", "Lena", "Tariq", "Sofia", "Ravi", "Mei"]
ITEMS = [("notebook", "notebooks"), ("pen", "pens"), ("apple", "apples"), ("ticket", "tickets"), ("book", "books")]
Template = Callable[[random.Random], tuple[str, str, list[Given], list[Step]]]


def _shopping(rng: random.Random) -> tuple[str, str, list[Given], list[Step]]:
    name = rng.choice(NAMES)
    (i1, p1), (i2, p2) = rng.sample(ITEMS, 2)
    a, p, b, q = rng.randint(2, 9), rng.randint(2, 12), rng.randint(2, 9), rng.randint(2, 12)
    bill = rng.choice([50, 100, 200]) if a * p + b * q < 50 else rng.choice([100, 200])
    givens = [Given(f"{{v}} {p1}", a), Given(f"${{v}} per {i1}", p), Given(f"{{v}} {p2}", b)]
    givens += [Given(f"${{v}} per {i2}", q), Given("a ${v} bill", bill)]
    question = (
        f"{name} buys {a} {p1} at ${p} each and {b} {p2} at ${q} each. {name} pays with a ${bill} bill. "
        f"How much change does {name} get?"
    )
    steps = [
        Step(f"cost of the {p1}", "×", a, p),
        Step(f"cost of the {p2}", "×", b, q),
        Step("total cost", "+", "#0", "#1"),
        Step("change", "-", bill, "#2"),
    ]
    return question, f"how much change {name} gets", givens, steps


def _rates(rng: random.Random) -> tuple[str, str, list[Given], list[Step]]:
    v, t, w, u = rng.randint(30, 90), rng.randint(2, 6), rng.randint(30, 90), rng.randint(2, 6)
    givens = [Given("{v} km per hour", v), Given("{v} hours", t), Given("{v} km per hour", w), Given("{v} hours", u)]
    question = (
        f"A train travels at {v} km per hour for {t} hours, then at {w} km per hour for {u} hours. "
        "How many kilometres does it travel in total?"
    )
    steps = [Step("first part", "×", v, t), Step("second part", "×", w, u), Step("total distance", "+", "#0", "#1")]
    return question, "the total distance travelled", givens, steps


def _ages(rng: random.Random) -> tuple[str, str, list[Given], list[Step]]:
    name = rng.choice(NAMES)
    a, d, k, n = rng.randint(3, 15), rng.randint(2, 9), rng.randint(2, 3), rng.randint(2, 10)
    givens = [Given(f"{name} is {{v}} years old", a), Given("the sister is {v} years older", d)]
    givens += [Given("the father is {v} times as old as the sister", k), Given("in {v} years", n)]
    question = (
        f"{name} is {a} years old. {name}'s sister is {d} years older. Their father is {k} times as old as the "
        f"sister. How old will the father be in {n} years?"
    )
    steps = [
        Step("sister's age", "+", a, d),
        Step("father's age now", "×", "#0", k),
        Step("in the future", "+", "#1", n),
    ]
    return question, f"the father's age in {n} years", givens, steps


def _savings(rng: random.Random) -> tuple[str, str, list[Given], list[Step]]:
    name = rng.choice(NAMES)
    s, w, jars = rng.randint(5, 30), rng.randint(4, 12), rng.randint(2, 5)
    spend = rng.randint(1, s * w - jars)
    spend += (s * w - spend) % jars  # make the rest divisible by the number of jars
    givens = [Given("${v} every week", s), Given("{v} weeks", w), Given("spends ${v}", spend), Given("{v} jars", jars)]
    question = (
        f"{name} saves ${s} every week for {w} weeks, then spends ${spend} on a bike and splits the rest equally "
        f"into {jars} jars. How many dollars go into each jar?"
    )
    steps = [Step("total saved", "×", s, w), Step("left after the bike", "-", "#0", spend)]
    steps.append(Step("per jar", "÷", "#1", jars))
    return question, "how many dollars go into each jar", givens, steps


def _factory(rng: random.Random) -> tuple[str, str, list[Given], list[Step]]:
    a, h, d = rng.randint(10, 60), rng.randint(4, 10), rng.randint(2, 6)
    bad = rng.randint(1, a * h)
    givens = [Given("{v} toys per hour", a), Given("{v} hours a day", h), Given("{v} days", d)]
    givens.append(Given("{v} defective toys", bad))
    question = (
        f"A factory makes {a} toys per hour and runs {h} hours a day for {d} days. {bad} of the toys are "
        "defective. How many good toys does it make?"
    )
    steps = [Step("toys per day", "×", a, h), Step("toys in all", "×", "#0", d), Step("good toys", "-", "#1", bad)]
    return question, "the number of good toys", givens, steps


def _baking(rng: random.Random) -> tuple[str, str, list[Given], list[Step]]:
    name = rng.choice(NAMES)
    trays, per, friends = rng.randint(2, 6), rng.randint(6, 15), rng.randint(2, 6)
    keep = rng.randint(0, trays * per - friends)
    keep += (trays * per - keep) % friends
    givens = [Given("{v} trays", trays), Given("{v} cookies per tray", per), Given("keeps {v}", keep)]
    givens.append(Given("{v} friends", friends))
    question = (
        f"{name} bakes {trays} trays of {per} cookies each, keeps {keep} and shares the rest equally among "
        f"{friends} friends. How many cookies does each friend get?"
    )
    steps = [Step("cookies baked", "×", trays, per), Step("cookies shared", "-", "#0", keep)]
    steps.append(Step("per friend", "÷", "#1", friends))
    return question, "how many cookies each friend gets", givens, steps


def _tickets(rng: random.Random) -> tuple[str, str, list[Given], list[Step]]:
    adults, price, parking = rng.randint(2, 8), rng.randint(8, 25), rng.randint(3, 15)
    givens = [Given("{v} adult tickets", adults), Given("${v} each", price), Given("${v} for parking", parking)]
    question = (
        f"A family buys {adults} adult tickets at ${price} each and pays ${parking} for parking. "
        "What is the total cost?"
    )
    steps = [Step("tickets", "×", adults, price), Step("with parking", "+", "#0", parking)]
    return question, "the total cost of the trip", givens, steps


TEMPLATES: dict[str, Template] = {
    "shopping": _shopping,
    "rates": _rates,
    "ages": _ages,
    "savings": _savings,
    "factory": _factory,
    "baking": _baking,
    "tickets": _tickets,
}


def _gets_more(rng: random.Random) -> tuple[str, str, list[Given], list[Step]]:
    name, (_, items) = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(2, 20), rng.randint(2, 20)
    question = f"{name} has {a} {items} and gets {b} more. How many {items} does {name} have now?"
    givens = [Given(f"{{v}} {items}", a), Given(f"{{v}} more {items}", b)]
    return question, f"how many {items} {name} has", givens, [Step(f"{items} in all", "+", a, b)]


def _gives_away(rng: random.Random) -> tuple[str, str, list[Given], list[Step]]:
    name, (_, items) = rng.choice(NAMES), rng.choice(ITEMS)
    a = rng.randint(5, 20)
    b = rng.randint(1, a - 1)
    question = f"{name} has {a} {items} and gives away {b}. How many {items} does {name} have left?"
    givens = [Given(f"{{v}} {items}", a), Given("gives away {v}", b)]
    return question, f"how many {items} {name} has left", givens, [Step(f"{items} left", "-", a, b)]


def _boxes(rng: random.Random) -> tuple[str, str, list[Given], list[Step]]:
    (_, items), per, boxes = rng.choice(ITEMS), rng.randint(2, 12), rng.randint(2, 9)
    question = f"A box holds {per} {items}. How many {items} are in {boxes} boxes?"
    givens = [Given(f"{{v}} {items} per box", per), Given("{v} boxes", boxes)]
    return question, f"how many {items} are in the boxes", givens, [Step(f"{items} in the boxes", "×", per, boxes)]


def _shares(rng: random.Random) -> tuple[str, str, list[Given], list[Step]]:
    (_, items), friends, each = rng.choice(ITEMS), rng.randint(2, 6), rng.randint(2, 9)
    total = friends * each
    question = f"{total} {items} are shared equally among {friends} friends. How many {items} does each friend get?"
    givens = [Given(f"{{v}} {items}", total), Given("{v} friends", friends)]
    return question, f"how many {items} each friend gets", givens, [Step("per friend", "÷", total, friends)]


ONE_STEP_TEMPLATES: dict[str, Template] = {
    "gets_more": _gets_more,
    "gives_away": _gives_away,
    "boxes": _boxes,
    "shares": _shares,
}
LEVELS: dict[str, dict[str, Template]] = {"multi_step": TEMPLATES, "one_step": ONE_STEP_TEMPLATES}


def problem_id(question: str) -> str:
    """Stable 12-hex-digit id of a question."""
    return hashlib.sha1(question.encode("utf-8")).hexdigest()[:12]


def split_of(question: str) -> str:
    """The split ('train' | 'validation' | 'test') a question belongs to (by hash bucket)."""
    bucket = int(problem_id(question), 16) % 100
    return next(name for name, buckets in SPLIT_BUCKETS.items() if bucket in buckets)


def generate_problems(n: int, seed: int, split: str = "test", level: str = "multi_step") -> list[ArithmeticProblem]:
    """``n`` distinct problems of ``split`` (default 'test': held out from training and validation data).

    Deterministic in ``(n, seed, split, level)``: the first ``m`` problems of a call with ``n >= m`` are the same.
    """
    if split not in SPLIT_BUCKETS:
        raise ValueError(f"split must be one of {list(SPLIT_BUCKETS)}, got {split!r}")
    if level not in LEVELS:
        raise ValueError(f"level must be one of {list(LEVELS)}, got {level!r}")
    templates = LEVELS[level]
    # multi_step keeps its original seed string, so the problems drawn before levels existed stay the same
    rng = random.Random(f"hipo-arithmetic:{seed}" if level == "multi_step" else f"hipo-arithmetic:{level}:{seed}")
    names = sorted(templates)
    problems: list[ArithmeticProblem] = []
    seen: set[str] = set()
    attempts = 0
    while len(problems) < n:
        attempts += 1
        if attempts > 1000 * (n + 10):
            raise RuntimeError(f"could not draw {n} distinct {split} problems (got {len(problems)})")
        topic = rng.choice(names)
        question, ask, givens, steps = templates[topic](rng)
        results = evaluate(steps)
        if results is None or question in seen or split_of(question) != split:
            continue
        seen.add(question)
        answer = results[-1][2]
        problems.append(
            ArithmeticProblem(problem_id(question), topic, question, ask, tuple(givens), tuple(steps), answer)
        )
    return problems
