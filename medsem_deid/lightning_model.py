"""Lightning glue of MedSem-DeID: Enc_med pre-training, the training-time identity network,
and training of the face generator (a conditional VAE-GAN; Tian, Wang, Zhai, AAAI 2025).
"""
from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.api.nn import CosFaceHead, PatchCritic, occlude, random_shift
from benchmark.api.training import adamw_cosine
from data.regions import periocular_crop, periocular_mask

from . import losses
from .config import MedSemConfig
from .torch_model import IdentityEmbedder, MedicalSemanticsEncoder, MedSemDeIDNet


def _shift(images: Tensor) -> Tensor:
    """Up to 2 px of misalignment: the identity push-away must hold under it, which
    discourages pixel-exact adversarial noise."""
    return random_shift(images, 2)


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
            images = _shift(images)
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
        return adamw_cosine(self.parameters(), self.lr, self.epochs)


class IdentityModule(L.LightningModule):
    """Trains the identity network with a CosFace margin softmax (Wang et al., CVPR 2018) over
    the training split's identities (``identity_class``: dataset ids mapped to classes), with
    optional occlusion augmentation (:func:`benchmark.api.nn.occlude`) so periocular cues
    count too."""

    def __init__(self, id_net: IdentityEmbedder, num_identities: int, lr: float = 2e-3,
                 epochs: int = 10, scale: float = 16.0, margin: float = 0.2,
                 p_keep_eyes: float = 0.0, p_erase: float = 0.0):
        super().__init__()
        self.id_net, self.lr, self.epochs = id_net, lr, epochs
        self.p_keep_eyes, self.p_erase = p_keep_eyes, p_erase
        self.head = CosFaceHead(id_net.embed[-1].out_features, num_identities, scale, margin,
                                init_std=0.1)

    def training_step(self, batch, batch_idx):
        images = batch["image"]
        if self.p_keep_eyes or self.p_erase:  # occlusion-robust: learn the periocular cues too
            # a solid fill is always a random colour, half the time (else a blur)
            images = occlude(images, batch["landmarks"], self.p_keep_eyes, self.p_erase,
                             p_solid=0.5, p_grey=0.0)
        emb, _ = self.id_net(_shift(images))
        target = batch["identity_class"]
        loss, acc = self.head.loss_and_accuracy(emb, target)
        self.log_dict({"id_loss": loss, "id_acc": acc}, prog_bar=True, batch_size=emb.shape[0])
        return loss

    def configure_optimizers(self):
        return adamw_cosine(self.parameters(), self.lr, self.epochs)


class DeIdModule(L.LightningModule):
    """Trains the face generator of :class:`MedSemDeIDNet` as a conditional VAE-GAN, with
    Enc_med, the periocular critic and the identity network frozen.

    Per batch: the VAE path reconstructs x from its own code z ~ q(z|x) and the medical
    condition of x (so the decoder learns to draw the signs the condition carries); the key
    path draws z ~ N(0, I) (what a key gives at anonymize time) for the same condition, and its
    face is judged by the patch discriminator (naturalness), pushed away from x's identity and
    from a second key's face, and held to x's diagnosis by Enc_med and the periocular critic.
    Without Enc_med (``medsem_deid_noprior``) the medical terms are dropped.
    """

    def __init__(self, net: MedSemDeIDNet, id_net: IdentityEmbedder, cfg: MedSemConfig,
                 med_crop: MedicalSemanticsEncoder | None = None):
        super().__init__()
        self.automatic_optimization = False  # generator and discriminator take turns
        self.net, self.id_net, self.cfg, self.med_crop = net, id_net, cfg, med_crop
        self.discriminator = PatchCritic(cfg.disc_width)
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
        cfg, x, landmarks = self.cfg, batch["image"], batch["landmarks"]
        opt_g, opt_d = self.optimizers()
        conditions = self.net.condition(x, landmarks)
        mean, log_var = self.net.identity_encoder(x)
        recon = self.net.generate(mean + torch.randn_like(mean) * (0.5 * log_var).exp(), conditions)
        fake = self.net.generate(torch.randn_like(mean), conditions)

        d_loss = losses.discriminator_hinge(self.discriminator(x), self.discriminator(fake.detach()))
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()

        n = max(1, round(cfg.aux_fraction * x.shape[0]))
        other = self.net.generate(torch.randn_like(mean[:n]), [c[:n] for c in conditions])
        with torch.no_grad():
            source_emb, _ = self.id_net(x)
        emb, _ = self.id_net(_shift(fake))
        emb_other, _ = self.id_net(_shift(other))
        terms = {
            "reconstruction": losses.weighted_l1(recon, x, 1 + cfg.w_eye_reconstruction
                                                 * periocular_mask(landmarks, x.shape[-2:])),
            "kl": losses.kl_divergence(mean, log_var),
            "adversarial": losses.generator_hinge(self.discriminator(fake)),
            "identity": losses.identity_push_away(emb, source_emb, cfg.id_margin),
            "diversity": losses.identity_push_away(emb[:n], emb_other, cfg.diversity_margin),
        }
        weights = {"reconstruction": cfg.w_reconstruction, "kl": cfg.w_kl,
                   "adversarial": cfg.w_adversarial, "identity": cfg.w_identity,
                   "diversity": cfg.w_diversity}
        if self.net.enc_med is not None:
            if cfg.w_medical:
                terms["medical"] = losses.medical_consistency(self.net.enc_med, fake, x)
                weights["medical"] = cfg.w_medical
            if self.med_crop is not None:
                terms["medical_crop"] = losses.medical_consistency(
                    self.med_crop, periocular_crop(fake, landmarks), periocular_crop(x, landmarks))
                weights["medical_crop"] = cfg.w_medical_crop
        loss = sum(weights[name] * value for name, value in terms.items())
        opt_g.zero_grad()
        self.manual_backward(loss)
        opt_g.step()

        self.log_dict({f"loss/{k}": v.detach() for k, v in terms.items()}, batch_size=x.shape[0])
        self.log_dict({"loss": loss.detach(), "d_loss": d_loss.detach(),
                       "cos_src": (emb.detach() * source_emb).sum(1).mean()},
                      prog_bar=True, batch_size=x.shape[0])

    def on_train_epoch_end(self):
        for scheduler in self.lr_schedulers():
            scheduler.step()

    def configure_optimizers(self):
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt_g = torch.optim.Adam(params, lr=self.cfg.lr, betas=(0.5, 0.9))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.cfg.lr, betas=(0.5, 0.9))
        epochs = max(self.cfg.deid_epochs, 1)
        return [opt_g, opt_d], [torch.optim.lr_scheduler.CosineAnnealingLR(opt_g, epochs),
                                torch.optim.lr_scheduler.CosineAnnealingLR(opt_d, epochs)]
