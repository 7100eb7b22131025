"""Human-readable summaries printed at the end of a job."""

from __future__ import annotations


def format_held_out_table(before: dict[str, float], after: dict[str, float], names: list[str]) -> str:
    """A Markdown table of held-out preference accuracy and reward margin per segment, before -> after training."""
    lines = [
        "| term | accuracy before | accuracy after | margin before | margin after | pairs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        acc = f"rewards/accuracy/{name}"
        margin = f"rewards/margin/{name}"
        if acc not in after:
            continue
        lines.append(
            f"| {name} | {before.get(acc, float('nan')):.3f} | {after[acc]:.3f} | "
            f"{before.get(margin, float('nan')):+.4f} | {after[margin]:+.4f} | {int(after.get(f'pairs/{name}', 0))} |"
        )
    return "\n".join(lines)


def format_nll_table(before: dict[str, float], after: dict[str, float], names: list[str]) -> str:
    """A Markdown table of the held-out per-token NLL of the chosen responses per segment, before -> after."""
    lines = ["| term | NLL before | NLL after | tokens |", "|---|---:|---:|---:|"]
    for name in names:
        key = f"nll/{name}"
        if key not in after:
            continue
        tokens = int(after.get(f"tokens/{name}", 0))
        lines.append(f"| {name} | {before.get(key, float('nan')):.4f} | {after[key]:.4f} | {tokens} |")
    return "\n".join(lines)
