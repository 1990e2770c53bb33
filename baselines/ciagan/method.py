"""``DeIdMethod`` plugins: CIAGAN (Maximov, Elezi, Leal-Taixé, CVPR 2020) and its eye-keeping
variant (``baselines/ciagan/README.md``).

``fit`` trains two stages through Lightning, each cached under ``work_dir``: the
training-time recogniser, then the identity-conditioned GAN. ``anonymize`` inpaints the region
with a target identity drawn per image from the method seed and the image's index.
"""
from __future__ import annotations

import dataclasses
import logging

import lightning as L
import torch

from benchmark.api.training import (derive_seed, load_stage, make_trainer, metrics_line,
                                    save_stage, tensor_loader)
from benchmark.api.inpainting import Critic, GANConfig, InpaintingGAN, per_image_draw

from .lightning_model import CiaganModule, RecogniserModule
from .networks import CiaganGenerator, Recogniser

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CiaganConfig(GANConfig):
    # training-time recogniser: width 24 and 6 epochs made the quick fit 11 minutes (it is
    # trained first, then run forward and backward in every generator step)
    id_width: int = 16  # its base width
    id_dim: int = 64  # its embedding size
    id_epochs: int = 4
    id_batch_size: int = 64
    id_lr: float = 2e-3
    w_identity: float = 1.0  # pull of the output towards the target identity


PRESETS = {
    # tests and the CI pipeline: one epoch of each stage, narrow nets
    "toy": CiaganConfig(batch_size=8, width=8, disc_width=8, code_dim=16, epochs=1, id_width=8,
                        id_dim=16, id_epochs=1, id_batch_size=8),
    # 64 px, minutes on a 2-core CPU
    "quick": CiaganConfig(),
    "full": CiaganConfig(batch_size=64, width=48, disc_width=64, code_dim=256, epochs=100,
                         lr=2e-4, id_width=48, id_dim=128, id_epochs=40),
}
_RECOGNISER_FIELDS = ("id_width", "id_dim", "id_epochs", "id_lr", "id_batch_size")


class Ciagan(InpaintingGAN):
    """CIAGAN (CVPR 2020): the head (jaw to brow, eyes included) is repainted by a generator
    conditioned on the landmarks and on a target identity drawn per image, pulled towards that
    identity by its own training-time recogniser."""

    name = "ciagan"
    description = ("CIAGAN (CVPR 2020): the head inpainted from landmarks as a drawn target "
                   "identity (eyes regenerated)")
    presets = PRESETS

    def prepare(self, data, stage):
        classes = torch.unique(data["identity"])
        data["identity_class"] = torch.searchsorted(classes, data["identity"])
        self.shapes = {"num_identities": len(classes)}
        cfg = self.cfg
        fields = {k: getattr(cfg, k) for k in _RECOGNISER_FIELDS}
        path = stage("recogniser", fields)
        path = path.with_suffix(".pt") if path is not None else None
        # the recogniser's own seed (never the harness's evaluators' or the GAN's)
        L.seed_everything(derive_seed(self.seed, "recogniser"), verbose=False)
        recogniser = Recogniser(cfg.id_width, cfg.id_dim)
        module = RecogniserModule(recogniser, len(classes), cfg.id_lr, cfg.id_epochs)
        if path is not None and path.exists():
            module.load_state_dict(load_stage(path))
        else:
            trainer = make_trainer(None if path is None else path.parent, cfg.id_epochs,
                                   self.trainer_kwargs)
            trainer.fit(module, tensor_loader(data, cfg.id_batch_size, True,
                                              derive_seed(self.seed, "recogniser/order")))
            log.info("%s recogniser trained: %s", self.tag, metrics_line(trainer))
            if path is not None and not self.smoke_run:
                save_stage(module.state_dict(), path)
        return {"recogniser": recogniser, "centres": module.head.weight.detach().clone()}

    def build_generator(self) -> CiaganGenerator:
        return CiaganGenerator(self.shapes["num_identities"], self.cfg.code_dim, self.cfg.width)

    def build_module(self, generator, recogniser, centres) -> CiaganModule:
        critic = Critic(3 + 5, self.cfg.disc_width)
        return CiaganModule(generator, critic, self.cfg, self.keep_eyes, recogniser, centres)

    def draw_codes(self, index: torch.Tensor) -> torch.Tensor:
        """The target identity of each image: uniform over the training identities, drawn from
        the method seed and the image's index."""
        count = self.shapes["num_identities"]
        return per_image_draw(self.seed, "target", index,
                              lambda g: torch.randint(count, (), generator=g))


class CiaganKeepEyes(Ciagan):
    """CIAGAN with eye holes in the mask: the periocular region (eyes, lids, brows: the eye
    signs) keeps its original pixels, the rest of the head is repainted."""

    name = "ciagan_keep_eyes"
    description = ("CIAGAN with eye holes: the head inpainted as a drawn target identity, the "
                   "periocular region kept")
    keep_eyes = True
