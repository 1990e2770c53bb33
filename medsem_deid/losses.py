"""Training objectives of MedSem-DeID (after Tian, Wang, Zhai, AAAI 2025, arXiv 2412.10804).

The paper names the goals (hide identity, keep medical semantics, recover with the key); the
exact terms and weights below are our choices, documented in ``medsem_deid/README.md``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def identity_push_away(embedding: Tensor, reference: Tensor, margin: float) -> Tensor:
    """Hinge on cosine similarity: unit embeddings closer than ``margin`` are pushed apart."""
    return F.relu((embedding * reference).sum(1) - margin).mean()


def medical_consistency(predicted: tuple[Tensor, Tensor, Tensor],
                        reference: tuple[Tensor, Tensor, Tensor],
                        feature_weight: float = 1.0) -> Tensor:
    """Enc_med's ``(features, label logits, sign logits)`` of the de-identified eye band match
    the original's: the features (weighted by ``feature_weight``) and the predictions. The
    features also carry the eye's identity; the predictions carry only the diagnosis."""
    feats, label_logits, sign_logits = predicted
    ref_feats, ref_labels, ref_signs = (t.detach() for t in reference)
    feature_term = F.mse_loss(feats, ref_feats) / ref_feats.var().clamp_min(1e-6)
    label_term = F.kl_div(F.log_softmax(label_logits, 1), F.softmax(ref_labels, 1),
                          reduction="batchmean")
    sign_term = (F.binary_cross_entropy_with_logits(sign_logits, torch.sigmoid(ref_signs))
                 if sign_logits.shape[1] else feats.new_zeros(()))
    return feature_weight * feature_term + label_term + sign_term


def parrot_confusion(logits: Tensor) -> Tensor:
    """Cross-entropy of the parrot adversary's identity logits to the uniform answer: zero
    gradient once it can no longer tell the training identities apart."""
    return -F.log_softmax(logits, 1).mean(1).mean()
