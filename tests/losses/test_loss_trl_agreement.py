"""The project's loss variants against TRL 1.16's own trainers: the same model, reference and token ids, the step-1
loss of both agrees within 1e-5 (fp32) for every variant TRL has.

TRL's side is its ``DPOTrainer`` (and, for the reference-free CPO, SimPO and ORPO, its experimental ``CPOTrainer``
and ``ORPOTrainer``), built by :mod:`tests.losses.trl_agreement`. The project's side is the loss module a config
builds, on log-probs from :func:`hipo.models.logprobs.sequence_segment_logps` over the project's collated batch.
Where the names differ the mapping is part of what is tested: TRL's ``ipo`` is the project's ``ipo_norm`` (the
project's ``ipo`` keeps the paper's sums), TRL's ``bco_pair`` is ``bco_pair`` without the running shift, TRL's
``sft`` term in a combination is ``nll_weight``, ``cpo_alpha`` is CPO's ``nll_weight``.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from hipo.data.collate import PairCollator
from hipo.data.tokenize import TokenizedPair
from hipo.losses.modules import DPOLoss, HiPOLoss, PairedPreferenceLoss
from hipo.losses.weights import FixedWeights
from hipo.models.logprobs import sequence_segment_logps
from hipo.models.tiny import build_tiny_model

pytest.importorskip("trl", reason="the [compare] extra (trl) is not installed")
from tests.losses.trl_agreement import (  # noqa: E402  # needs trl
    NUM_SEGMENTS,
    agreement_pairs,
    perturbed,
    trl_dpo_loss,
    trl_reference_free_loss,
)

VOCAB = 256
TOLERANCE = 1e-5
SEGMENTS = ["Rq", "Mt", "Ra"]


@pytest.fixture(scope="module")
def setup() -> dict[str, Any]:
    """A tiny fp32 policy, a reference that differs from it (log-ratios of a few nats), 6 pairs, the tokenizer."""
    from hipo.models.loading import DEFAULT_MODEL, load_tokenizer

    policy = build_tiny_model(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, init_std=0.3, seed=0)
    reference = perturbed(policy, scale=0.3)
    pairs = agreement_pairs(6, VOCAB, prompt=(3, 9))
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    assert tokenizer.pad_token_id == policy.config.pad_token_id  # TRL pads with the tokenizer's id
    return {"policy": policy, "reference": reference, "pairs": pairs, "tokenizer": tokenizer}


def project_loss(
    loss: PairedPreferenceLoss, policy: torch.nn.Module, reference: torch.nn.Module, pairs: list[TokenizedPair]
) -> torch.Tensor:
    """The loss module on the project's batch of ``pairs`` (padded rows), the reference scored without grad."""
    batch = PairCollator(pad_id=2, num_segments=NUM_SEGMENTS)(pairs)
    tails = loss.reads_tails
    policy_logps = sequence_segment_logps(policy.train(), batch, paired_tails=tails)
    reference_logps = None
    if loss.needs_reference:
        with torch.no_grad():
            reference_logps = sequence_segment_logps(reference.eval(), batch, paired_tails=tails)
    return loss(policy_logps, reference_logps, batch).loss.detach()


# (TRL's DPOConfig fields, the project's DPOLoss arguments): every loss_type of TRL 1.16's DPOTrainer but sft alone,
# f-divergences, LD-DPO's ld_alpha, an MPO combination
DPO_CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "sigmoid": ({"loss_type": ["sigmoid"]}, {"variant": "sigmoid"}),
    "hinge": ({"loss_type": ["hinge"]}, {"variant": "hinge"}),
    "ipo_is_trl_ipo": ({"loss_type": ["ipo"]}, {"variant": "ipo_norm"}),
    "exo_pair": (
        {"loss_type": ["exo_pair"], "label_smoothing": 1e-3},
        {"variant": "exo_pair", "label_smoothing": 1e-3},
    ),
    "nca_pair": ({"loss_type": ["nca_pair"]}, {"variant": "nca_pair"}),
    "robust": ({"loss_type": ["robust"], "label_smoothing": 0.2}, {"variant": "robust", "label_smoothing": 0.2}),
    "bco_pair_unshifted": ({"loss_type": ["bco_pair"]}, {"variant": "bco_pair", "bco_running_mean": False}),
    "sppo_hard": ({"loss_type": ["sppo_hard"]}, {"variant": "sppo_hard"}),
    "aot": ({"loss_type": ["aot"], "label_smoothing": 0.1}, {"variant": "aot", "label_smoothing": 0.1}),
    "aot_unpaired": ({"loss_type": ["aot_unpaired"]}, {"variant": "aot_unpaired"}),
    "apo_zero": ({"loss_type": ["apo_zero"]}, {"variant": "apo_zero"}),
    "apo_down": ({"loss_type": ["apo_down"]}, {"variant": "apo_down"}),
    "discopop": ({"loss_type": ["discopop"], "discopop_tau": 0.1}, {"variant": "discopop", "discopop_tau": 0.1}),
    "sigmoid_norm": ({"loss_type": ["sigmoid_norm"]}, {"variant": "sigmoid_norm"}),
    "forward_kl": (
        {"loss_type": ["sigmoid"], "f_divergence_type": "forward_kl"},
        {"variant": "sigmoid", "f_divergence": "forward_kl"},
    ),
    "js_divergence_hinge": (
        {"loss_type": ["hinge"], "f_divergence_type": "js_divergence"},
        {"variant": "hinge", "f_divergence": "js_divergence"},
    ),
    "alpha_divergence": (
        {"loss_type": ["sigmoid"], "f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 0.3},
        {"variant": "sigmoid", "f_divergence": "alpha_divergence", "f_alpha": 0.3},
    ),
    "ld_dpo": ({"loss_type": ["sigmoid"], "ld_alpha": 0.4}, {"variant": "sigmoid", "ld_alpha": 0.4}),
    "ld_ipo": ({"loss_type": ["ipo"], "ld_alpha": 0.0}, {"variant": "ipo_norm", "ld_alpha": 0.0}),
    "mpo_with_sft": (
        {"loss_type": ["sigmoid", "bco_pair", "sft"], "loss_weights": [0.8, 0.2, 1.0]},
        {
            "variant": ["sigmoid", "bco_pair"],
            "variant_weights": [0.8, 0.2],
            "nll_weight": 1.0,
            "bco_running_mean": False,
        },
    ),
}


@pytest.mark.slow  # one TRL trainer per case (~1 s each)
@pytest.mark.parametrize("case", list(DPO_CASES))
def test_dpo_variants_agree_with_trl_dpo_trainer(setup: dict[str, Any], case: str) -> None:
    trl_config, ours = DPO_CASES[case]
    beta = 0.3
    expected = trl_dpo_loss(
        setup["policy"], setup["reference"], setup["pairs"], setup["tokenizer"], beta=beta, **trl_config
    )
    got = project_loss(
        DPOLoss(beta=beta, segment_names=SEGMENTS, **ours), setup["policy"], setup["reference"], setup["pairs"]
    )
    assert abs(float(expected)) > 1e-3 and torch.isfinite(got)  # a loss that says something (not 0 by chance)
    assert float(got) == pytest.approx(float(expected), abs=TOLERANCE, rel=TOLERANCE), case


@pytest.mark.slow
def test_hipo_with_the_whole_term_alone_agrees_with_trl(setup: dict[str, Any]) -> None:
    """HiPO with weight only on the whole term is DPO: TRL's value again, through the segment-level path."""
    expected = trl_dpo_loss(
        setup["policy"], setup["reference"], setup["pairs"], setup["tokenizer"], beta=0.3, loss_type=["ipo"]
    )
    loss = HiPOLoss(beta=0.3, weights=FixedWeights([0.0, 0.0, 0.0, 1.0]), segment_names=SEGMENTS, variant="ipo_norm")
    got = project_loss(loss, setup["policy"], setup["reference"], setup["pairs"])
    assert float(got) == pytest.approx(float(expected), abs=TOLERANCE, rel=TOLERANCE)


# (trainer, its config fields, the project's DPOLoss arguments) of the reference-free variants
REFERENCE_FREE_CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "cpo": ("cpo", {"loss_type": "sigmoid", "beta": 0.2, "cpo_alpha": 1.0}, {"variant": "cpo", "beta": 0.2}),
    "cpo_smoothed_nll_half": (
        "cpo",
        {"loss_type": "sigmoid", "beta": 0.2, "cpo_alpha": 0.5, "label_smoothing": 0.1},
        {"variant": "cpo", "beta": 0.2, "nll_weight": 0.5, "label_smoothing": 0.1},
    ),
    "simpo": (
        "cpo",
        {"loss_type": "simpo", "beta": 2.0, "simpo_gamma": 0.8, "cpo_alpha": 0.0},
        {"variant": "simpo", "beta": 2.0, "simpo_gamma": 0.8},
    ),
    "orpo": ("orpo", {"beta": 0.25}, {"variant": "orpo", "beta": 0.25}),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(REFERENCE_FREE_CASES))
def test_reference_free_variants_agree_with_trl_cpo_and_orpo(setup: dict[str, Any], case: str) -> None:
    """CPO and SimPO agree whole. ORPO's odds-ratio term agrees; its NLL term differs by design: the project's is
    the chosen response's (the paper's L_SFT, as every NLL term here), TRL 1.16's ORPOTrainer also scores the
    prompt's tokens, so the comparison takes TRL's logged NLL out of its loss and the project's out of its own."""
    kind, trl_config, ours = REFERENCE_FREE_CASES[case]
    expected, trl_nll = trl_reference_free_loss(kind, setup["policy"], setup["pairs"], setup["tokenizer"], **trl_config)
    if kind == "orpo":
        expected, ours = expected - trl_nll, {**ours, "nll_weight": 0.0}
    loss = DPOLoss(segment_names=SEGMENTS, **ours)
    assert not loss.needs_reference
    got = project_loss(loss, setup["policy"], None, setup["pairs"])  # type: ignore[arg-type]  # never read
    assert abs(float(expected)) > 1e-3
    assert float(got) == pytest.approx(float(expected), abs=TOLERANCE, rel=TOLERANCE), case
    # the NLL term is in both (CPO with cpo_alpha > 0, ORPO always) or, for SimPO, in neither
    assert (trl_nll > 0.1) == (case != "simpo")
