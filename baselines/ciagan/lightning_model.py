"""Lightning glue of CIAGAN: the training-time recogniser (CosFace over the training
identities) and the GAN with its identity loss."""
from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.api.nn import CosFaceHead, random_shift
from benchmark.api.training import adamw_cosine
from benchmark.api.inpainting import GANConfig, InpaintingGANModule, landmark_heatmaps

from .networks import CiaganGenerator, Recogniser


class RecogniserModule(L.LightningModule):
    """Trains :class:`Recogniser` with a CosFace margin softmax (Wang et al., CVPR 2018) over the
    training identities (``identity_class``), with up to 2 px of random shift."""

    def __init__(self, recogniser: Recogniser, num_identities: int, lr: float, epochs: int):
        super().__init__()
        self.recogniser, self.lr, self.epochs = recogniser, lr, epochs
        self.head = CosFaceHead(recogniser.embed.out_features, num_identities, scale=16.0,
                                margin=0.2, init_std=0.1)

    def training_step(self, batch, batch_idx):
        emb = self.recogniser(random_shift(batch["image"], 2))
        target = batch["identity_class"]
        loss, acc = self.head.loss_and_accuracy(emb, target)
        self.log_dict({"id_loss": loss, "id_acc": acc}, prog_bar=True, batch_size=emb.shape[0])
        return loss

    def configure_optimizers(self):
        return adamw_cosine(self.parameters(), self.lr, self.epochs)


class CiaganModule(InpaintingGANModule):
    """CIAGAN's GAN: a least-squares critic on (image, landmarks) and an identity loss that
    pulls the composite's embedding (the frozen recogniser's) to the target identity's class
    centre. Each image gets a target drawn uniformly among the other training identities."""

    gan_loss = "lsgan"

    def __init__(self, generator: CiaganGenerator, critic, cfg: GANConfig, keep_eyes: bool,
                 recogniser: Recogniser, centres: Tensor):
        super().__init__(generator, critic, cfg, keep_eyes)
        self.recogniser = recogniser.requires_grad_(False).eval()
        self.register_buffer("centres", F.normalize(centres, dim=1))

    def train(self, mode: bool = True) -> "CiaganModule":
        super().train(mode)
        self.recogniser.eval()  # frozen: keeps its BatchNorm statistics
        return self

    def train_codes(self, batch: dict[str, Tensor]) -> Tensor:
        source = batch["identity_class"]
        shift = torch.randint(1, len(self.centres), source.shape, device=source.device)
        return (source + shift) % len(self.centres)  # never the source itself

    def critic_input(self, image: Tensor, landmarks: Tensor, mask: Tensor) -> Tensor:
        return torch.cat([image, landmark_heatmaps(landmarks, image.shape[-2:])], 1)

    def extra_terms(self, batch, fake, codes):
        emb = self.recogniser(fake)
        pull = 1 - (emb * self.centres[codes]).sum(1).mean()
        return {"identity": (self.cfg.w_identity, pull)}
