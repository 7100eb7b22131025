"""The one evaluation prompt shared by every method, rendered with the model's own chat template."""

from __future__ import annotations

from typing import Any

QUESTION_PLACEHOLDER = "{question}"

DEFAULT_PROMPT_TEMPLATE = (
    "Solve the following math problem step by step. Put your final answer within \\boxed{}.\n\nProblem: {question}"
)


def check_template(template: str) -> None:
    """Raises ``ValueError`` unless ``template`` contains the ``{question}`` placeholder exactly once."""
    count = template.count(QUESTION_PLACEHOLDER)
    if count != 1:
        raise ValueError(
            f"prompt template must contain {QUESTION_PLACEHOLDER} exactly once, found {count}: {template!r}"
        )


def fill_template(template: str, question: str) -> str:
    """The user message: ``template`` with ``{question}`` replaced (other braces, e.g. ``\\boxed{}``, kept)."""
    check_template(template)
    return template.replace(QUESTION_PLACEHOLDER, question)


def render_prompt(
    tokenizer: Any, question: str, template: str = DEFAULT_PROMPT_TEMPLATE, system: str | None = None
) -> str:
    """The full model input text: the filled template as a user turn in the tokenizer's chat template.

    Args:
        tokenizer: a Hugging Face tokenizer; its ``chat_template`` is used with ``add_generation_prompt=True``.
        question: the problem text.
        template: the user-message template with a ``{question}`` placeholder.
        system: an optional system message.

    Returns:
        The prompt string, ending where the assistant's reply starts. A tokenizer without a chat template (a base
        model) gets the filled template followed by a newline.
    """
    content = fill_template(template, question)
    if not getattr(tokenizer, "chat_template", None):
        prefix = f"{system}\n\n" if system else ""
        return f"{prefix}{content}\n"
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
