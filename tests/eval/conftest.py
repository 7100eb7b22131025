"""Shared fixtures of the evaluation tests."""

from __future__ import annotations

import pytest
import torch

from hipo.models.tiny import build_tiny_model


def spread_model() -> torch.nn.Module:
    """The tiny model with larger random layer weights, so that greedy outputs differ from prompt to prompt.

    (With the default small init and tied embeddings, every prompt greedily repeats its last token.)
    """
    tiny = build_tiny_model(seed=0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in tiny.named_parameters():
            if "layers" in name and parameter.dim() == 2:
                parameter.normal_(0.0, 0.3, generator=generator)
    return tiny


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """``spread_model()``, shared by the tests of one module."""
    return spread_model()
