"""``DeIdMethod`` plugins: MedSem-DeID (Tian, Wang, Zhai, "Medical Manifestation-Aware
De-Identification", AAAI 2025, arXiv 2412.10804) and its no-prior ablation.

``fit`` runs four stages, each through a Lightning ``Trainer`` (``trainer_kwargs`` forwarded)
and each saved under ``work_dir`` so an interrupted fit resumes and a finished one is reused:
Enc_med, the periocular critic, the training-time identity network, and the face generator.
``anonymize`` draws the shown face from the key and seals the original in its low bits
(``payload.py``); ``recover`` opens that seal with the key.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.api.fitted import FittedMethod
from benchmark.api.training import (data_fingerprint, derive_seed, load_stage, make_trainer,
                                    materialize, metrics_line, save_stage, tensor_loader)
from data.regions import CANONICAL_LANDMARKS

from . import payload
from .config import MedSemConfig, make_config
from .lightning_model import DeIdModule, IdentityModule, MedicalSemanticsModule
from .torch_model import IdentityEmbedder, MedicalSemanticsEncoder, MedSemDeIDNet

log = logging.getLogger(__name__)

_BATCH_KEYS = ("image", "label", "signs", "identity", "landmarks")
#: config fields each pre-trained network depends on (its cache key)
_ENC_MED_FIELDS = ("med_width", "med_channels", "med_epochs", "pre_lr", "batch_size")
_MED_CROP_FIELDS = ("med_width", "med_channels", "med_crop_epochs", "pre_lr", "batch_size")
_ID_NET_FIELDS = ("id_width", "id_dim", "id_epochs", "pre_lr", "batch_size", "id_keep_eyes",
                  "id_erase")


class MedSemDeID(FittedMethod):
    """MedSem-DeID (AAAI 2025): a key-drawn face conditioned on frozen Enc_med features, the
    original sealed in its low bits under the key (``medsem_deid/README.md``).

    Options (keyword, after the contract's ``profile``/``seed``/``work_dir``/``trainer_kwargs``)
    override single fields of :class:`medsem_deid.config.MedSemConfig`.
    """

    name = "medsem_deid"
    description = ("MedSem-DeID (AAAI 2025): a generated face that keeps the periocular signs, "
                   "the original sealed in it under the key")
    reversible = True
    key_bits = 256
    #: join Enc_med features and train with the medical-consistency loss
    use_medical_prior = True
    networks = ("net",)
    #: what fit learns from a config; bumped when it changes without a config change (seeds,
    #: layers), so cached fits and stages of the old recipe are not reused
    fit_recipe = 2

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.key_bits = self.cfg.key_bits
        self.shapes: dict[str, int] = {}
        #: what a wrong key recovers: the mean training face (a face of no one)
        self.neutral_face: Tensor | None = None

    def make_config(self, profile: str, **options) -> MedSemConfig:
        return make_config(profile, **options)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "medical_prior": self.use_medical_prior,
                "fit_recipe": self.fit_recipe}

    def build_networks(self) -> dict[str, nn.Module]:
        enc_med = None
        if self.use_medical_prior:
            enc_med = MedicalSemanticsEncoder(self.shapes["num_classes"], self.shapes["num_signs"],
                                              self.cfg.med_width, self.cfg.med_channels)
        return {"net": self._build_net(enc_med)}

    def extra_state(self) -> dict[str, Any]:
        return {"shapes": dict(self.shapes), "neutral_face": self.neutral_face.cpu()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.shapes = dict(state["shapes"])
        self.neutral_face = state["neutral_face"]

    # -- training --------------------------------------------------------------------------------
    def _stage_path(self, stage: str, fields: tuple[str, ...], fingerprint: str) -> Path | None:
        """A pre-training stage's cache, keyed by the config ``fields`` it depends on and the
        recipe."""
        return self.stage_path(stage, (*fields, "fit_recipe"), fingerprint)

    def _trainer(self, root: Path, epochs: int, *, resumable: bool = False) -> L.Trainer:
        return make_trainer(root, epochs, self.trainer_kwargs, resumable=resumable)

    def _fit_enc_med(self, path: Path, train: dict, val: dict | None,
                     crop: bool = False) -> MedicalSemanticsEncoder:
        """Enc_med (``crop=False``) or the periocular medical critic (``crop=True``)."""
        cfg = self.cfg
        epochs = cfg.med_crop_epochs if crop else cfg.med_epochs
        stage = "med_crop" if crop else "enc_med"
        seed = derive_seed(self.seed, stage)  # each network its own seed
        L.seed_everything(seed, verbose=False)
        enc_med = MedicalSemanticsEncoder(self.shapes["num_classes"], self.shapes["num_signs"],
                                          cfg.med_width, cfg.med_channels)
        if path.exists():
            enc_med.load_state_dict(load_stage(path))
            return enc_med
        module = MedicalSemanticsModule(enc_med, cfg.pre_lr, epochs, crop=crop)
        val_loader = tensor_loader(val, 256, False, 0) if val else None
        trainer = self._trainer(path.parent, epochs)
        trainer.fit(module, tensor_loader(train, cfg.batch_size, True, seed), val_loader)
        log.info("%s trained: %s", "periocular critic" if crop else "Enc_med",
                 metrics_line(trainer))
        if not self.smoke_run:
            save_stage(enc_med.state_dict(), path)
        return enc_med

    def _fit_id_net(self, path: Path, train: dict) -> IdentityEmbedder:
        cfg = self.cfg
        seed = derive_seed(self.seed, "id_net")  # the identity network's own seed
        L.seed_everything(seed, verbose=False)
        id_net = IdentityEmbedder(cfg.id_width, cfg.id_dim)
        if path.exists():
            id_net.load_state_dict(load_stage(path))
            return id_net
        classes = torch.unique(train["identity"])
        data = {**train, "identity_class": torch.searchsorted(classes, train["identity"])}
        module = IdentityModule(id_net, len(classes), cfg.pre_lr, cfg.id_epochs,
                                p_keep_eyes=cfg.id_keep_eyes, p_erase=cfg.id_erase)
        trainer = self._trainer(path.parent, cfg.id_epochs)
        trainer.fit(module, tensor_loader(data, cfg.batch_size, True, seed))
        log.info("identity network trained: %s", metrics_line(trainer))
        if not self.smoke_run:
            save_stage(id_net.state_dict(), path)
        return id_net

    def _build_net(self, enc_med: MedicalSemanticsEncoder | None) -> MedSemDeIDNet:
        cfg = self.cfg
        net = MedSemDeIDNet(enc_med, z_dim=cfg.z_dim, width=cfg.width, med_width=cfg.med_width,
                            med_channels=cfg.med_channels, cond_channels=cfg.cond_channels)
        net.freeze_prior()
        if self.neutral_face is not None:
            net.generator.set_template(self.neutral_face)  # the buffer takes the training size
        return net

    def fit(self, train) -> None:
        """Pre-train Enc_med, the periocular critic and the identity network, then train the
        face generator; every stage is cached under ``work_dir`` (keyed by config, seed and
        dataset fingerprint)."""
        train.setup()
        fingerprint = data_fingerprint(train)
        run_dir = self.stage_path(self.name, None, fingerprint)
        final = run_dir / "medsem_deid.pt" if run_dir else None
        if final is not None and final.exists():
            self.load_state_dict(load_stage(final))
            return
        self.shapes = {"num_classes": len(train.classes), "num_signs": len(train.signs)}
        with contextlib.ExitStack() as stack:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            run_dir = run_dir or scratch / self.name
            train_data = materialize(train.train_dataloader(), _BATCH_KEYS)
            self.neutral_face = train_data["image"].float().mean(0) / 255
            enc_med = med_crop = None
            if self.use_medical_prior:
                val_data = materialize(train.val_dataloader(), _BATCH_KEYS)
                path = self._stage_path("enc_med", _ENC_MED_FIELDS, fingerprint)
                enc_med = self._fit_enc_med(path.with_suffix(".pt") if path else scratch / "enc_med.pt",
                                            train_data, val_data)
                if self.cfg.med_crop_epochs > 0:
                    path = self._stage_path("med_crop", _MED_CROP_FIELDS, fingerprint)
                    med_crop = self._fit_enc_med(
                        path.with_suffix(".pt") if path else scratch / "med_crop.pt",
                        train_data, val_data, crop=True)
            path = self._stage_path("id_net", _ID_NET_FIELDS, fingerprint)
            id_net = self._fit_id_net(path.with_suffix(".pt") if path else scratch / "id_net.pt",
                                      train_data)
            self._fit_deid(run_dir, train_data, enc_med, id_net, med_crop)
        self.save_fitted(final)

    def _fit_deid(self, root: Path, train: dict, enc_med, id_net, med_crop=None) -> None:
        seed = derive_seed(self.seed, "deid")
        L.seed_everything(seed, verbose=False)
        net = self._build_net(enc_med)
        module = DeIdModule(net, id_net, self.cfg, med_crop)
        last = root / "deid" / "last.ckpt"
        trainer = self._trainer(root / "deid", self.cfg.deid_epochs, resumable=not self.smoke_run)
        trainer.fit(module, tensor_loader(train, self.cfg.batch_size, True, seed),
                    ckpt_path=last if last.exists() else None)
        log.info("face generator trained: %s", metrics_line(trainer))
        self.set_networks(net=net)

    # -- inference -------------------------------------------------------------------------------
    def anonymize(self, batch: dict[str, Tensor], keys: Tensor | None) -> Tensor:
        """ID-encryptor: a face drawn from the key that shows the periocular signs of
        ``batch["image"]``, with the original sealed under the key in its low bits. The output
        is exactly 8-bit (multiples of 1/255), so a PNG stores it without loss."""
        images = batch["image"]
        keys = self.checked_keys(keys, len(images)).detach().cpu().numpy()
        landmarks = batch.get("landmarks")
        if landmarks is None:
            landmarks = CANONICAL_LANDMARKS.expand(len(images), 5, 2)
        codes = torch.from_numpy(payload.face_noise(keys, self.cfg.z_dim))
        shown = self.run_chunked(lambda x, marks, z: self.net.generate(z, self.net.condition(x, marks)),
                                 images, landmarks, codes)
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
        neutral = to_uint8(F.interpolate(self.neutral_face[None], size=(h, w), mode="bilinear",
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
