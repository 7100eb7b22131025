"""The embedded default data: arithmetic word problems with structured solutions and localized errors."""

from hipo.data.synthetic.problems import ArithmeticProblem, Given, Step, generate_problems, split_of
from hipo.data.synthetic.responses import ERROR_SEGMENTS, StructuredResponse, dispreferred_response, preferred_response

__all__ = [
    "ERROR_SEGMENTS",
    "ArithmeticProblem",
    "Given",
    "Step",
    "StructuredResponse",
    "dispreferred_response",
    "generate_problems",
    "preferred_response",
    "split_of",
]
