"""``DeIdMethod`` plugins: MedSem-DeID (Tian, Wang, Zhai, "Medical Manifestation-Aware
De-Identification", AAAI 2025, arXiv 2412.10804) and its no-prior ablation.

``fit`` trains Enc_med on the eye band and the training-time identity network (each a cached
stage under ``work_dir``), then the inpainting generator through the training kit's GAN loop
(``benchmark.api.inpainting``: Lightning, cached, resumable). ``anonymize`` repaints the head
from the key's identity code and Enc_med's view of the signs, and seals the original in the
low bits (``payload.py``); ``recover`` opens that seal with the key.
"""
from __future__ import annotations

import logging
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.api.inpainting import Critic, InpaintingGAN
from benchmark.api.training import (data_fingerprint, derive_seed, load_stage, make_trainer,
                                    metrics_line, save_stage, stage_path, tensor_loader)

from . import payload
from .config import PROFILES
from .lightning_model import IdentityModule, MedicalSemanticsModule, MedSemGANModule
from .torch_model import IdentityEmbedder, MedicalSemanticsEncoder, MedSemGenerator

log = logging.getLogger(__name__)

#: config fields each pre-trained network depends on (its cache key)
_ENC_MED_FIELDS = ("med_width", "med_channels", "med_crop_epochs", "pre_lr", "batch_size")
_ID_NET_FIELDS = ("id_width", "id_dim", "id_epochs", "pre_lr", "batch_size", "id_keep_eyes",
                  "id_erase")
#: the pre-training recipe (part of those stages' keys; unchanged since version 2, whose
#: cached Enc_med and identity networks therefore stay valid)
_PRETRAIN_RECIPE = 2


class MedSemDeID(InpaintingGAN):
    """MedSem-DeID (AAAI 2025): the head repainted from a key-drawn identity code, guided by
    frozen Enc_med features of the eye band, the original sealed in its low bits under the key
    (``medsem_deid/README.md``).

    Options (keyword, after the contract's ``profile``/``seed``/``work_dir``/``trainer_kwargs``)
    override single fields of :class:`medsem_deid.config.MedSemConfig`.
    """

    name = "medsem_deid"
    description = ("MedSem-DeID (AAAI 2025): the head repainted from the key, guided by Enc_med "
                   "to keep the periocular signs; the original sealed in it under the key")
    reversible = True
    key_bits = 256
    presets = PROFILES
    #: join Enc_med features and train with the medical-consistency loss
    use_medical_prior = True
    train_keys = ("image", "identity", "landmarks", "label", "signs")
    #: 4: version 4 (parrot adversary, key-modulated condition); earlier cached fits not reused
    fit_recipe = 4

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.key_bits = self.cfg.key_bits
        self._fingerprint = ""

    def config(self) -> dict[str, Any]:
        return {**super().config(), "medical_prior": self.use_medical_prior}

    # -- the inpainting GAN's hooks --------------------------------------------------------------
    def _enc_med(self) -> MedicalSemanticsEncoder | None:
        if not self.use_medical_prior:
            return None
        return MedicalSemanticsEncoder(self.shapes["num_classes"], self.shapes["num_signs"],
                                       self.cfg.med_width, self.cfg.med_channels)

    def build_generator(self) -> MedSemGenerator:
        cfg = self.cfg
        return MedSemGenerator(self._enc_med(), cfg.z_dim, cfg.code_dim, cfg.width,
                               cfg.cond_channels, cfg.cond_levels, cfg.key_film,
                               cfg.cond_taper)

    def build_module(self, generator: MedSemGenerator, enc_med, id_net,
                     identities) -> MedSemGANModule:
        if enc_med is not None:  # the trained, frozen Enc_med goes inside the generator
            generator.enc_med.load_state_dict(enc_med.state_dict())
        return MedSemGANModule(generator, Critic(3 + 1, self.cfg.disc_width), id_net, self.cfg,
                               identities)

    def fit(self, train) -> None:
        """Pre-train Enc_med (eye band) and the identity network, then the generator; every
        stage cached under ``work_dir`` (keyed by config, seed and dataset fingerprint)."""
        train.setup()
        self.shapes = {"num_classes": len(train.classes), "num_signs": len(train.signs)}
        self._fingerprint = data_fingerprint(train)
        super().fit(train)

    def prepare(self, data: dict[str, Tensor], stage) -> dict[str, Any]:
        enc_med = None
        if self.use_medical_prior:
            enc_med = self._pretrain("med_crop", _ENC_MED_FIELDS, data, self._enc_med,
                                     self._enc_med_module)
        id_net = self._pretrain("id_net", _ID_NET_FIELDS, data,
                                lambda: IdentityEmbedder(self.cfg.id_width, self.cfg.id_dim),
                                self._id_module)
        return {"enc_med": enc_med, "id_net": id_net, "identities": torch.unique(data["identity"])}

    # -- pre-training ----------------------------------------------------------------------------
    def _enc_med_module(self, enc_med, data) -> tuple[L.LightningModule, dict, int]:
        return (MedicalSemanticsModule(enc_med, self.cfg.pre_lr, self.cfg.med_crop_epochs),
                data, self.cfg.med_crop_epochs)

    def _id_module(self, id_net, data) -> tuple[L.LightningModule, dict, int]:
        cfg = self.cfg
        classes = torch.unique(data["identity"])
        data = {**data, "identity_class": torch.searchsorted(classes, data["identity"])}
        return (IdentityModule(id_net, len(classes), cfg.pre_lr, cfg.id_epochs,
                               p_keep_eyes=cfg.id_keep_eyes, p_erase=cfg.id_erase),
                data, cfg.id_epochs)

    def _pretrain(self, name: str, fields: tuple[str, ...], data: dict, build,
                  make_module) -> torch.nn.Module:
        """Train (or load) one frozen helper network, built by ``build()`` and trained by the
        Lightning module ``make_module(network, data)`` gives, from its own seed; cached as
        ``work_dir/<name>-<hash>.pt``."""
        config = self.config()
        key = {**{k: config[k] for k in fields}, "fit_recipe": _PRETRAIN_RECIPE}
        path = stage_path(self.work_dir, name, key, self.seed, self._fingerprint)
        path = path.with_suffix(".pt") if path else None
        seed = derive_seed(self.seed, name)
        L.seed_everything(seed, verbose=False)  # before build(): the initial weights too
        network = build()
        if path is not None and path.exists():
            network.load_state_dict(load_stage(path))
            return network.eval()
        module, train, epochs = make_module(network, data)
        trainer = make_trainer(path.parent if path else None, epochs, self.trainer_kwargs)
        trainer.fit(module, tensor_loader(train, self.cfg.batch_size, True, seed))
        log.info("%s trained: %s", name, metrics_line(trainer))
        if path is not None and not self.smoke_run:
            save_stage(network.state_dict(), path)
        return network.eval()

    # -- inference -------------------------------------------------------------------------------
    def anonymize(self, batch: dict[str, Tensor], keys: Tensor | None) -> Tensor:
        """ID-encryptor: the head repainted from the key's identity code with the periocular
        signs Enc_med sees in ``batch["image"]``, the original sealed under the key in the low
        bits. The output is exactly 8-bit (multiples of 1/255): a PNG stores it losslessly."""
        images = batch["image"]
        keys = self.checked_keys(keys, len(images)).detach().cpu().numpy()
        codes = torch.from_numpy(payload.face_noise(keys, self.cfg.z_dim))
        shown = self.inpaint(images, batch.get("landmarks"), codes)
        sealed = [payload.seal(original, key, self.cfg.payload_bits)
                  for original, key in zip(to_uint8(images), payload.key_bytes(keys))]
        stego = payload.embed(to_uint8(shown), sealed, self.cfg.payload_bits)
        return from_uint8(stego).to(images.device)

    def recover(self, images: Tensor, keys: Tensor) -> Tensor:
        """ID-decryptor: the original face from the de-identified image and its key alone.
        A wrong key (or an image whose low bits a lossy format destroyed) fails the cipher's
        authentication and gives the neutral face: the mean training face, no one's."""
        self.require_fitted()
        keys = self.checked_keys(keys, len(images)).detach().cpu().numpy()
        h, w = images.shape[-2:]
        neutral = to_uint8(F.interpolate(self.mean_face[None], size=(h, w), mode="bilinear",
                                          align_corners=False))[0]
        sealed = payload.extract(to_uint8(images), self.cfg.payload_bits)
        opened = [payload.unseal(data, key, (h, w), self.cfg.payload_bits)
                  for data, key in zip(sealed, payload.key_bytes(keys))]
        return from_uint8(np.stack([neutral if o is None else o for o in opened])).to(images.device)


def to_uint8(images: Tensor) -> np.ndarray:
    """``[B,3,H,W]`` float in [0,1] -> ``[B,H,W,3]`` uint8 (rounded, as an 8-bit file stores it)."""
    return (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def from_uint8(images: np.ndarray) -> Tensor:
    """``[B,H,W,3]`` uint8 -> ``[B,3,H,W]`` float, exact multiples of 1/255."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255


class MedSemDeIDNoPrior(MedSemDeID):
    """Ablation: the same network without Enc_med features and medical-consistency loss."""

    name = "medsem_deid_noprior"
    description = "MedSem-DeID without the medical prior (ablation: no Enc_med, no L_med)"
    use_medical_prior = False
