"""Structured Rq/Mt/Ra solutions of arithmetic problems, and dispreferred ones with ONE error in ONE segment.

* Rq restates what is asked and the givens: "We need to find <ask>. Given: <g1>; <g2>; …."
* Mt lists the numbered steps with their arithmetic: "Step 1: <description>: 4 × 3 = 12."
* Ra states the result: "The answer is N." or "The answer is \\boxed{N}."

The dispreferred response copies the preferred one except in its error segment:
* ``Rq``: one given is misread in the restatement (its value is off by a small amount); Mt and Ra stay correct;
* ``Mt``: an arithmetic slip in one step whose wrong value propagates through the later steps. What Ra then
  states is ``mt_error_answer`` (one of ``MT_ERROR_ANSWERS``):

  - ``gold`` (default): the correct answer, so the error stays inside Mt ("right answer, flawed work");
  - ``propagated``: the wrong result the slipped steps computed, so Ra is consistent with its own Mt;
  - ``contradicting``: a third number, neither the gold answer nor the last step's value, so Ra contradicts the
    line just before it (a gross error a model can detect by copying);
* ``Ra``: the steps are right but the stated final answer is wrong.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hipo.data.synthetic.problems import ArithmeticProblem, evaluate

ERROR_SEGMENTS = ("Rq", "Mt", "Ra")
MT_ERROR_ANSWERS = ("gold", "propagated", "contradicting")
_DELTAS = (1, 2, 3, 10, -1, -2, -3, -10)


@dataclass(frozen=True)
class StructuredResponse:
    """The three segment texts of one response."""

    Rq: str
    Mt: str
    Ra: str

    def parts(self) -> dict[str, str]:
        return {"Rq": self.Rq, "Mt": self.Mt, "Ra": self.Ra}


def render_query(problem: ArithmeticProblem, misread: tuple[int, int] | None = None) -> str:
    """The restatement; ``misread = (given index, wrong value)`` misstates one given."""
    givens = [
        given.render(misread[1] if misread is not None and index == misread[0] else None)
        for index, given in enumerate(problem.givens)
    ]
    return f"We need to find {problem.ask}. Given: {'; '.join(givens)}."


def render_steps(problem: ArithmeticProblem, slip: tuple[int, int] | None = None) -> tuple[str, int]:
    """The numbered steps and their final value; ``slip = (step index, wrong result)`` injects a slip."""
    results = evaluate(problem.steps, None if slip is None else {slip[0]: slip[1]})
    if results is None:
        raise ValueError(f"slip {slip} makes the steps of problem {problem.id} undefined")
    lines = [
        f"Step {i + 1}: {step.description}: {left} {step.op} {right} = {value}."
        for i, (step, (left, right, value)) in enumerate(zip(problem.steps, results, strict=True))
    ]
    return "\n".join(lines), results[-1][2]


def render_answer(value: int, boxed: bool) -> str:
    """The final-answer sentence."""
    return f"The answer is \\boxed{{{value}}}." if boxed else f"The answer is {value}."


def preferred_response(problem: ArithmeticProblem, boxed: bool) -> StructuredResponse:
    """The correct structured solution."""
    steps, value = render_steps(problem)
    return StructuredResponse(render_query(problem), steps, render_answer(value, boxed))


def check_mt_error_answer(mt_error_answer: str) -> None:
    """Raises ValueError unless ``mt_error_answer`` is one of ``MT_ERROR_ANSWERS``."""
    if mt_error_answer not in MT_ERROR_ANSWERS:
        raise ValueError(f"mt_error_answer must be one of {MT_ERROR_ANSWERS}, got {mt_error_answer!r}")


def _wrong(value: int, rng: random.Random, avoid: int | None = None) -> int:
    candidates = [value + d for d in _DELTAS if value + d >= 0 and value + d != avoid]
    return rng.choice(candidates)


def dispreferred_response(
    problem: ArithmeticProblem, error_segment: str, boxed: bool, rng: random.Random, mt_error_answer: str = "gold"
) -> StructuredResponse:
    """The preferred solution with one error placed in ``error_segment`` (see the module docstring)."""
    check_mt_error_answer(mt_error_answer)
    good = preferred_response(problem, boxed)
    if error_segment == "Rq":
        index = rng.randrange(len(problem.givens))
        return StructuredResponse(
            render_query(problem, (index, _wrong(problem.givens[index].value, rng))), good.Mt, good.Ra
        )
    if error_segment == "Ra":
        return StructuredResponse(good.Rq, good.Mt, render_answer(_wrong(problem.answer, rng), boxed))
    if error_segment != "Mt":
        raise ValueError(f"error_segment must be one of {ERROR_SEGMENTS}, got {error_segment!r}")
    step_order = list(range(len(problem.steps)))
    rng.shuffle(step_order)
    deltas = list(_DELTAS)
    rng.shuffle(deltas)
    correct = evaluate(problem.steps)
    assert correct is not None
    for index in step_order:
        divisors = [int(s.right) for s in problem.steps[index + 1 :] if s.op == "÷" and isinstance(s.right, int)]
        for delta in deltas + [d * m for m in divisors for d in (1, -1, 2, -2)]:
            wrong = correct[index][2] + delta
            if wrong < 0 or evaluate(problem.steps, {index: wrong}) is None:
                continue
            steps, value = render_steps(problem, (index, wrong))
            if mt_error_answer == "gold":
                return StructuredResponse(good.Rq, steps, good.Ra)
            if value == problem.answer:  # the slip cancelled out: Ra could not differ from the gold answer's
                continue
            stated = value if mt_error_answer == "propagated" else _wrong(value, rng, avoid=problem.answer)
            return StructuredResponse(good.Rq, steps, render_answer(stated, boxed))
    raise ValueError(f"no arithmetic slip keeps the steps of problem {problem.id} well defined")
