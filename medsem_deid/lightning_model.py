"""Lightning glue of MedSem-DeID: Enc_med pre-training, the training-time identity network,
and training of the inpainting generator (Tian, Wang, Zhai, AAAI 2025).
"""
from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from benchmark.api.inpainting import InpaintingGANModule, composite, deid_mask
from benchmark.api.nn import CosFaceHead, occlude, random_shift
from benchmark.api.training import adamw_cosine
from data.regions import periocular_crop

from . import losses
from .config import MedSemConfig
from .torch_model import IdentityEmbedder, MedicalSemanticsEncoder, MedSemGenerator


def _shift(images: Tensor) -> Tensor:
    """Up to 2 px of misalignment: the identity push-away must hold under it, which
    discourages pixel-exact adversarial noise."""
    return random_shift(images, 2)


def _random_view(crop: Tensor) -> Tensor:
    """One random view of an eye-band crop for the medical term: a Gaussian blur of sigma up to
    1.6 crop pixels (1.2 pixels of a 64 px face: the crop enlarges the band 4/3 times) and a
    little noise."""
    sigma = float(torch.empty(()).uniform_(0.05, 1.6))
    crop = TF.gaussian_blur(crop, [5, 5], [sigma, sigma])
    return crop + 0.02 * torch.randn_like(crop)


class MedicalSemanticsModule(L.LightningModule):
    """Trains Enc_med on coarse disease labels (cross-entropy) and fine-grained signs (BCE) of
    the landmark-aligned eye band, jittered in training."""

    def __init__(self, enc_med: MedicalSemanticsEncoder, lr: float = 2e-3, epochs: int = 8):
        super().__init__()
        self.enc_med, self.lr, self.epochs = enc_med, lr, epochs

    def _loss(self, batch: dict, stage: str) -> Tensor:
        images = periocular_crop(batch["image"], batch["landmarks"],
                                 jitter=0.1 if self.training else 0.0)
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


class MedSemGANModule(InpaintingGANModule):
    """Trains the generator (:class:`MedSemGenerator`) as the training kit's inpainting GAN
    (DeepPrivacy2's non-saturating loss, lazy R1 and drift on the critic) with more generator
    terms, Enc_med and the identity network frozen: the painted face is pushed away from the
    source's identity and from a second key's face (key diversity), and held to the source's
    diagnosis by Enc_med on both eye bands (medical consistency; not in the no-prior ablation).
    With ``w_parrot``, a parrot adversary (a recogniser learning, in the critic's step, to name
    the source identity of the painted faces: the harness's parrot attack, in the loop) is
    confused too. Codes are z ~ N(0, I), what a key gives at anonymize time."""

    gan_loss = "ns"

    def __init__(self, generator: MedSemGenerator, critic, id_net: IdentityEmbedder,
                 cfg: MedSemConfig, identities: Tensor):
        super().__init__(generator, critic, cfg, keep_eyes=False)
        self.id_net = id_net.requires_grad_(False).eval()
        self.parrot = None
        if cfg.w_parrot:
            #: the training identities, sorted: a batch's identity -> the parrot's class
            self.register_buffer("identities", identities.sort().values)
            self.parrot = IdentityEmbedder(cfg.id_width, cfg.id_dim)
            self.parrot_head = CosFaceHead(cfg.id_dim, len(identities), 16.0, 0.2, init_std=0.1)

    def train(self, mode: bool = True) -> "MedSemGANModule":
        super().train(mode)
        self.id_net.eval()  # frozen: keeps its BatchNorm statistics
        return self

    def adversary_parameters(self) -> list:
        if self.parrot is None:
            return []
        return [*self.parrot.parameters(), *self.parrot_head.parameters()]

    def adversary_loss(self, batch: dict[str, Tensor], fake: Tensor) -> Tensor | None:
        if self.parrot is None:
            return None
        emb, _ = self.parrot(_shift(fake))
        target = torch.searchsorted(self.identities, batch["identity"])
        loss, acc = self.parrot_head.loss_and_accuracy(emb, target)
        self.log("parrot_acc", acc, prog_bar=True, batch_size=len(fake))
        return loss

    def train_codes(self, batch: dict[str, Tensor]) -> Tensor:
        return torch.randn(len(batch["image"]), self.cfg.z_dim, device=batch["image"].device)

    def extra_terms(self, batch: dict[str, Tensor], fake: Tensor, codes: Tensor
                    ) -> dict[str, tuple[float, Tensor]]:
        cfg, x, landmarks = self.cfg, batch["image"], batch["landmarks"]
        n = max(1, round(cfg.aux_fraction * len(x)))
        mask = deid_mask(landmarks[:n], x.shape[-2:], keep_eyes=False)
        other = composite(x[:n], self.generator(x[:n], landmarks[:n], mask,
                                                self.train_codes(batch)[:n]), mask)
        with torch.no_grad():
            source, _ = self.id_net(x)
        emb, _ = self.id_net(_shift(fake))
        emb_other, _ = self.id_net(_shift(other))
        terms = {
            "identity": (cfg.w_identity, losses.identity_push_away(emb, source, cfg.id_margin)),
            "diversity": (cfg.w_diversity, losses.identity_push_away(emb[:n], emb_other,
                                                                     cfg.diversity_margin)),
        }
        enc_med = self.generator.enc_med
        if enc_med is not None:
            with torch.no_grad():
                reference = enc_med(periocular_crop(x, landmarks))
            exact = losses.medical_consistency(enc_med(periocular_crop(fake, landmarks)),
                                               reference, cfg.w_med_features)
            medical = exact
            if cfg.med_view_share:  # the same diagnosis must survive a shift, blur and noise
                view = _random_view(periocular_crop(fake, landmarks, jitter=0.1))
                medical = (1 - cfg.med_view_share) * exact + cfg.med_view_share * \
                    losses.medical_consistency(enc_med(view), reference, cfg.w_med_features)
            terms["medical"] = (cfg.w_medical, medical)
        if self.parrot is not None:  # the parrot's weights are stepped only by the critic's step
            emb_parrot, _ = self.parrot(_shift(fake))
            terms["parrot"] = (cfg.w_parrot,
                               losses.parrot_confusion(
                                   self.parrot_head.cosine(emb_parrot) * self.parrot_head.scale))
        self.log("cos_src", (emb.detach() * source).sum(1).mean(), prog_bar=True,
                 batch_size=len(x))
        return terms
