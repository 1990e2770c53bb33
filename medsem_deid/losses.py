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


def medical_consistency(enc_med, deidentified: Tensor, original: Tensor) -> Tensor:
    """Enc_med features and predictions of the de-identified image match the original's."""
    feats, label_logits, sign_logits = enc_med(deidentified)
    with torch.no_grad():
        ref_feats, ref_labels, ref_signs = enc_med(original)
    feature_term = F.mse_loss(feats, ref_feats) / ref_feats.var().clamp_min(1e-6)
    label_term = F.kl_div(F.log_softmax(label_logits, 1), F.softmax(ref_labels, 1),
                          reduction="batchmean")
    sign_term = (F.binary_cross_entropy_with_logits(sign_logits, torch.sigmoid(ref_signs))
                 if sign_logits.shape[1] else feats.new_zeros(()))
    return feature_term + label_term + sign_term


def weighted_l1(output: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """L1 weighted per pixel (the periocular region counts more: the signs are small)."""
    return ((output - target).abs() * weight).mean()


def kl_divergence(mean: Tensor, log_var: Tensor) -> Tensor:
    """KL(q(z|x) || N(0, I)) of the VAE, summed over z, averaged over the batch: keeps the
    codes a face is reconstructed from distributed like the key-drawn ones."""
    return 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(1).mean()


def discriminator_hinge(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Hinge loss of the patch discriminator (Lim and Ye 2017; as in SAGAN)."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def generator_hinge(fake_logits: Tensor) -> Tensor:
    """The generator's side of the hinge GAN: make every patch look real."""
    return -fake_logits.mean()
