"""Training objectives of MedSem-DeID (after Tian, Wang, Zhai, AAAI 2025, arXiv 2412.10804).

The paper names the goals (hide identity, keep medical semantics, recover with the key); the
exact terms and weights below are our choices, documented in ``medsem_deid/README.md``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.functional import gaussian_blur

from data.regions import face_mask, periocular_mask


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


def random_translate(images: Tensor, pixels: int = 2) -> Tensor:
    """Shift the batch by up to ``pixels`` (reflect padding): the identity push-away must hold
    under small misalignment, which discourages pixel-exact adversarial noise."""
    dy, dx = torch.randint(-pixels, pixels + 1, (2,)).tolist()
    h, w = images.shape[-2:]
    padded = F.pad(images, (pixels, pixels, pixels, pixels), mode="reflect")
    return padded[..., pixels + dy: pixels + dy + h, pixels + dx: pixels + dx + w]


def occlude(images: Tensor, landmarks: Tensor, p_keep_eyes: float, p_erase: float) -> Tensor:
    """Occlusion augmentation for the training-time identity network, so it also learns the
    periocular identity cues (iris colour, eye shape and spacing, brows, skin around the eyes)
    instead of leaning on the whole face; its push-away then removes those cues too (random
    erasing, Zhong et al., AAAI 2020). Per image, independently:

    - with ``p_keep_eyes``: the face outside the periocular region becomes a solid colour or a
      strong blur (what eye-keeping de-identification leaves);
    - with ``p_erase``: a random rectangle (2-25 % of the image) gets a random colour.
    """
    b, _, h, w = images.shape
    dev = images.device
    region = face_mask(landmarks, (h, w)) * (1 - periocular_mask(landmarks, (h, w)))
    sigma = max(h, w) / 16
    blurred = gaussian_blur(images, [int(4 * sigma) | 1] * 2, [sigma, sigma])
    colour = torch.rand(b, 3, 1, 1, device=dev).expand_as(images)
    fill = torch.where(torch.rand(b, 1, 1, 1, device=dev) < 0.5, colour, blurred)
    keep_eyes = (torch.rand(b, 1, 1, 1, device=dev) < p_keep_eyes).float()
    out = torch.lerp(images, fill, region * keep_eyes)
    # random erasing: box size and position per image
    area = (0.02 + 0.23 * torch.rand(b, 1, 1, device=dev)) * h * w
    aspect = torch.exp((torch.rand(b, 1, 1, device=dev) - 0.5) * 2.2)
    eh, ew = (area * aspect).sqrt().clamp(1, h), (area / aspect).sqrt().clamp(1, w)
    y0, x0 = torch.rand(b, 1, 1, device=dev) * (h - eh), torch.rand(b, 1, 1, device=dev) * (w - ew)
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    box = ((ys >= y0) & (ys < y0 + eh) & (xs >= x0) & (xs < x0 + ew)).unsqueeze(1).float()
    erase = box * (torch.rand(b, 1, 1, 1, device=dev) < p_erase).float()
    return torch.lerp(out, torch.rand(b, 3, 1, 1, device=dev).expand_as(out), erase)

