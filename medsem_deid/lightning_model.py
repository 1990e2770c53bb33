"""Lightning glue of MedSem-DeID: Enc_med pre-training, the training-time identity network,
and DeID training of the keyed encryptor/decryptor (Tian, Wang, Zhai, AAAI 2025).
"""
from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from data.regions import periocular_crop

from . import losses
from .config import MedSemConfig
from .torch_model import (IdentityEmbedder, MedicalSemanticsEncoder, MedSemDeIDNet,
                          channel_dropped)


def random_keys(batch_size: int, key_bits: int, device=None, generator=None) -> Tensor:
    """Random {0,1} key bit strings [B, key_bits] (float), as the harness draws them."""
    return torch.randint(0, 2, (batch_size, key_bits), device=device, generator=generator).float()


class MedicalSemanticsModule(L.LightningModule):
    """Trains Enc_med on coarse disease labels (cross-entropy) and fine-grained signs (BCE)."""

    def __init__(self, enc_med: MedicalSemanticsEncoder, lr: float = 2e-3, epochs: int = 8,
                 crop: bool = False):
        super().__init__()
        self.enc_med, self.lr, self.epochs, self.crop = enc_med, lr, epochs, crop

    def _loss(self, batch: dict, stage: str) -> Tensor:
        images = batch["image"]
        if self.crop:  # the periocular critic: landmark-aligned eye band, jittered in training
            images = periocular_crop(images, batch["landmarks"],
                                            jitter=0.1 if self.training else 0.0)
        elif self.training:
            images = losses.random_translate(images)
            # half the batch as the couplings see it (one colour channel replaced by the
            # others' mean), so the encryptor's conditioning features are in distribution
            dropped = channel_dropped(images, int(torch.randint(0, 3, ())))
            pick = torch.rand(images.shape[0], 1, 1, 1, device=images.device) < 0.5
            images = torch.where(pick, dropped, images)
        _, label_logits, sign_logits = self.enc_med(images)
        loss = F.cross_entropy(label_logits, batch["label"])
        if sign_logits.shape[1]:
            loss = loss + F.binary_cross_entropy_with_logits(sign_logits, batch["signs"])
        acc = (label_logits.argmax(1) == batch["label"]).float().mean()
        self.log_dict({f"{stage}_loss": loss, f"{stage}_acc": acc}, prog_bar=True,
                      batch_size=images.shape[0])
        return loss

    def training_step(self, batch, batch_idx):
        return self._loss(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._loss(batch, "val")

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=1e-4)
        return [opt], [torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(self.epochs, 1))]


class IdentityModule(L.LightningModule):
    """Trains the identity network with a CosFace margin softmax (Wang et al., CVPR 2018) over
    the training split's identities (``identity_class``: dataset ids mapped to classes), with
    optional occlusion augmentation (:func:`losses.occlude`) so periocular cues count too."""

    def __init__(self, id_net: IdentityEmbedder, num_identities: int, lr: float = 2e-3,
                 epochs: int = 10, scale: float = 16.0, margin: float = 0.2,
                 p_keep_eyes: float = 0.0, p_erase: float = 0.0):
        super().__init__()
        self.id_net, self.lr, self.epochs = id_net, lr, epochs
        self.p_keep_eyes, self.p_erase = p_keep_eyes, p_erase
        self.scale, self.margin = scale, margin
        dim = id_net.embed[-1].out_features
        self.proxies = torch.nn.Parameter(torch.randn(num_identities, dim) * 0.1)

    def training_step(self, batch, batch_idx):
        images = batch["image"]
        if self.p_keep_eyes or self.p_erase:  # occlusion-robust: learn the periocular cues too
            images = losses.occlude(images, batch["landmarks"], self.p_keep_eyes, self.p_erase)
        emb, _ = self.id_net(losses.random_translate(images))
        cos = emb @ F.normalize(self.proxies, dim=1).T
        target = batch["identity_class"]
        logits = self.scale * (cos - self.margin * F.one_hot(target, cos.shape[1]))
        loss = F.cross_entropy(logits, target)
        acc = (cos.argmax(1) == target).float().mean()
        self.log_dict({"id_loss": loss, "id_acc": acc}, prog_bar=True, batch_size=emb.shape[0])
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=1e-4)
        return [opt], [torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(self.epochs, 1))]


class DeIdModule(L.LightningModule):
    """DeID training of :class:`MedSemDeIDNet` with Enc_med and the identity network frozen.

    ``use_medical_prior=False`` is the no-prior ablation: the net has no Enc_med and the
    medical-consistency term is dropped.
    """

    def __init__(self, net: MedSemDeIDNet, id_net: IdentityEmbedder, cfg: MedSemConfig,
                 med_crop: MedicalSemanticsEncoder | None = None):
        super().__init__()
        self.net, self.id_net, self.cfg, self.med_crop = net, id_net, cfg, med_crop
        self.net.freeze_prior()
        for critic in (id_net, med_crop):
            if critic is not None:
                critic.requires_grad_(False)
                critic.eval()

    def train(self, mode: bool = True) -> "DeIdModule":
        super().train(mode)
        self.id_net.eval()  # frozen critics keep their BatchNorm statistics
        if self.med_crop is not None:
            self.med_crop.eval()
        self.net.train(mode)  # re-freezes Enc_med's mode
        return self

    def training_step(self, batch, batch_idx):
        cfg, x = self.cfg, batch["image"]
        keys = random_keys(x.shape[0], cfg.key_bits, x.device)
        deid = self.net.encrypt(x, keys)
        # the key-pair terms (recovery, wrong key, diversity) run on a slice of the batch: the
        # flow is exactly invertible, so they need far fewer samples than de-identification
        n = max(1, round(cfg.aux_fraction * x.shape[0]))
        x_aux, deid_aux, keys_aux = x[:n], deid[:n], keys[:n]
        other_keys = random_keys(n, cfg.key_bits, x.device)
        deid_other = self.net.encrypt(x_aux, other_keys)
        with torch.no_grad():
            source_emb, source_stem = self.id_net(x)
        emb, stem = self.id_net(losses.random_translate(deid))
        emb_other, _ = self.id_net(losses.random_translate(deid_other))
        recovered = self.net.decrypt(losses.quantisation_noise(deid_aux), keys_aux)
        wrong, _ = self.id_net(self.net.decrypt(deid_aux, other_keys))

        terms = {
            "identity": losses.identity_push_away(emb, source_emb, cfg.id_margin),
            "diversity": losses.identity_push_away(emb[:n], emb_other, cfg.diversity_margin),
            "locality": losses.locality(deid, x, batch["landmarks"], cfg.w_locality,
                                        cfg.w_eye_locality),
            "naturalness": losses.feature_statistics(stem, source_stem),
            "smoothness": losses.change_smoothness(deid, x),
            "recovery": losses.recovery(recovered, x_aux),
            "wrong_key": losses.identity_push_away(wrong, source_emb[:n], cfg.id_margin),
        }
        weights = {"identity": cfg.w_identity, "diversity": cfg.w_diversity, "locality": 1.0,
                   "naturalness": cfg.w_naturalness, "smoothness": cfg.w_smoothness,
                   "recovery": cfg.w_recovery,
                   "wrong_key": cfg.w_wrong_key}
        if self.net.enc_med is not None:
            terms["medical"] = losses.medical_consistency(self.net.enc_med, deid, x)
            weights["medical"] = cfg.w_medical
        if self.med_crop is not None:
            landmarks = batch["landmarks"]
            terms["medical_crop"] = losses.medical_consistency(
                self.med_crop, periocular_crop(deid, landmarks),
                periocular_crop(x, landmarks))
            weights["medical_crop"] = cfg.w_medical_crop
        loss = sum(weights[name] * value for name, value in terms.items())
        self.log_dict({f"loss/{k}": v.detach() for k, v in terms.items()}, batch_size=x.shape[0])
        self.log("loss", loss, prog_bar=True, batch_size=x.shape[0])
        with torch.no_grad():
            self.log("cos_src", (emb * source_emb).sum(1).mean(), prog_bar=True,
                     batch_size=x.shape[0])
        return loss

    def configure_optimizers(self):
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=self.cfg.lr)
        return [opt], [torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(self.cfg.deid_epochs, 1))]
