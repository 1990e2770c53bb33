"""``riddle``: RiDDLE (Li, Wang, Zhao, Dong, Tan, "RiDDLE: Reversible and Diversified
De-identification with Latent Encryptor", CVPR 2023) as a ``DeIdMethod`` plugin.

The harness's key is the password: ``anonymize(batch, keys)`` encodes the face, encrypts its
latent with the password and decodes it into the face region; ``recover(images, keys)``
re-encodes the de-identified *image* (a PNG a user holds, not a hidden latent) and runs the same
encryptor with the same password. ``fit`` trains the recogniser, the autoencoder and the
encryptor, each through a Lightning ``Trainer`` and each cached under ``work_dir``
(``README.md``).
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from benchmark.api.fitted import FittedMethod
from benchmark.api.nn import CosFaceHead
from benchmark.api.recognition import Recogniser, fit_recogniser
from benchmark.api.training import (data_fingerprint, derive_seed, load_stage, make_trainer,
                                    materialize, metrics_line, save_stage, tensor_loader)
from data.regions import CANONICAL_LANDMARKS, face_mask

from .config import KEYED_FLIP_PROFILES, PROFILES
from .lightning_model import AutoencoderModule, RiDDLEModule, encrypt
from .torch_model import Autoencoder, LatentEncryptor

log = logging.getLogger(__name__)

#: config fields each cached stage depends on (its key)
_RECOGNISER_FIELDS = ("id_width", "id_dim", "id_epochs", "id_lr", "batch_size")
_AUTOENCODER_FIELDS = ("cell", "latent_channels", "ae_width", "ae_epochs", "ae_lr",
                       "batch_size")


class RiDDLE(FittedMethod):
    """RiDDLE (CVPR 2023): a password-driven latent encryptor over an autoencoder; the same
    encryptor with the same password decrypts the re-encoded de-identified image, a wrong
    password gives yet another face.

    Options (keyword, after the contract's ``profile``/``seed``/``work_dir``/``trainer_kwargs``)
    override single fields of :class:`baselines.riddle.config.RiDDLEConfig`.
    """

    name = "riddle"
    description = ("RiDDLE (CVPR 2023): a 64-bit-password latent encryptor over a suite-trained "
                   "autoencoder; the same password decrypts the re-encoded image")
    reversible = True
    key_bits = 64
    networks = ("autoencoder", "encryptor")
    presets = PROFILES

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.key_bits = self.cfg.key_bits
        self.image_size = 0  # set by fit (the encryptor's token count follows from it)

    def extra_state(self) -> dict[str, Any]:
        return {"image_size": self.image_size}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.image_size = int(state["image_size"])

    def build_networks(self) -> dict[str, nn.Module]:
        cfg = self.cfg
        if self.image_size % cfg.cell:
            raise ValueError(f"{self.name}: image size {self.image_size} is not a multiple of "
                             f"the latent cell {cfg.cell}")
        tokens = (self.image_size // cfg.cell) ** 2
        return {"autoencoder": Autoencoder(cfg.ae_width, cfg.latent_channels, cfg.cell),
                "encryptor": LatentEncryptor(cfg.latent_channels, tokens, cfg.key_bits,
                                             cfg.couplings, cfg.mapper_dim, cfg.mapper_heads,
                                             cfg.flipped_channels, cfg.keyed_flip)}

    # -- training --------------------------------------------------------------------------------
    def fit(self, train) -> None:
        """Train the recogniser, the autoencoder, then the encryptor; each cached under
        ``work_dir`` (keyed by the config fields it depends on, seed and dataset fingerprint),
        the encryptor resumable by epoch."""
        train.setup()
        fingerprint = data_fingerprint(train)
        run_dir = self.stage_path("riddle", None, fingerprint)
        final = run_dir / "riddle.pt" if run_dir else None
        if final is not None and final.exists():
            self.load_state_dict(load_stage(final))
            return
        data = materialize(train.train_dataloader(), ("image", "identity", "landmarks"))
        ids = torch.unique(data["identity"])
        data["identity_class"] = torch.searchsorted(ids, data["identity"])
        self.image_size = data["image"].shape[-1]
        landmarks = _landmarks(data.pop("landmarks", None), len(data["image"]))
        data["mask"] = self._masks(landmarks, tuple(data["image"].shape[-2:]))
        with contextlib.ExitStack() as stack:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            run_dir = run_dir or scratch / "riddle"

            def stage(name: str, fields) -> Path:
                path = self.stage_path(name, fields, fingerprint)
                return path.with_suffix(".pt") if path else scratch / f"{name}.pt"

            recogniser, head = fit_recogniser(
                self, stage("riddle_recogniser", _RECOGNISER_FIELDS), data, len(ids),
                "riddle/recogniser")
            autoencoder = self._fit_autoencoder(
                stage("riddle_autoencoder", _AUTOENCODER_FIELDS), data)
            encryptor = self._fit_encryptor(run_dir, data, autoencoder, recogniser, head)
        self.set_networks(autoencoder=autoencoder, encryptor=encryptor)
        self.save_fitted(final)

    def _fit_autoencoder(self, path: Path, data: dict) -> Autoencoder:
        """The autoencoder: the principal components of the training faces' cells, then
        ``ae_epochs`` of fine-tuning."""
        cfg = self.cfg
        L.seed_everything(derive_seed(self.seed, "riddle/autoencoder"), verbose=False)
        autoencoder = Autoencoder(cfg.ae_width, cfg.latent_channels, cfg.cell)
        if path.exists():
            autoencoder.load_state_dict(load_stage(path))
            return autoencoder
        autoencoder.init_from_pca(data["image"].float() / 255)
        self._train(AutoencoderModule(autoencoder, cfg.ae_lr, cfg.ae_epochs), path.parent,
                    cfg.ae_epochs, data, "riddle/autoencoder data")
        if not self.smoke_run:
            save_stage(autoencoder.state_dict(), path)
        return autoencoder

    def _fit_encryptor(self, root: Path, data: dict, autoencoder: Autoencoder,
                       recogniser: Recogniser, head: CosFaceHead) -> LatentEncryptor:
        L.seed_everything(derive_seed(self.seed, "riddle/encryptor"), verbose=False)
        encryptor = self.build_networks()["encryptor"]
        module = RiDDLEModule(autoencoder, encryptor, recogniser, head, self.cfg)
        self._train(module, root / "encryptor", self.cfg.epochs, data, "riddle/encryptor data",
                    resumable=not self.smoke_run)
        return encryptor

    def _train(self, module: L.LightningModule, root: Path, epochs: int, data: dict,
               seed_name: str, resumable: bool = False) -> None:
        """Fit ``module`` on ``data`` (resuming from ``root/last.ckpt`` when ``resumable``)."""
        last = root / "last.ckpt"
        trainer = make_trainer(root, epochs, self.trainer_kwargs, resumable=resumable)
        trainer.fit(module, tensor_loader(data, self.cfg.batch_size, True,
                                          derive_seed(self.seed, seed_name)),
                    ckpt_path=last if resumable and last.exists() else None)
        log.info("%s trained: %s", type(module).__name__, metrics_line(trainer))

    # -- inference -------------------------------------------------------------------------------
    def _masks(self, landmarks: Tensor, size: tuple[int, int]) -> Tensor:
        """Where the decoded face is pasted: the face mask, or everywhere without
        ``composite``."""
        if not self.cfg.composite:
            return torch.ones(len(landmarks), 1, *size)
        return face_mask(landmarks.float(), size)

    def anonymize(self, batch: dict[str, Tensor], keys: Tensor | None) -> Tensor:
        """``m D(M(E(x), p)) + (1 - m) x``: the encrypted face in the face mask ``m``."""
        images = batch["image"]
        masks = self._masks(_landmarks(batch.get("landmarks"), len(images)),
                            tuple(images.shape[-2:])).to(images.device)
        keys = self.checked_keys(keys, len(images)).float()
        return self.run_chunked(
            lambda x, k, m: torch.lerp(x, self._encrypt(x, k), m), images, keys, masks)

    def recover(self, images: Tensor, keys: Tensor) -> Tensor:
        """``D(M(E(y), p))``: the same encryptor and password on the re-encoded image; a wrong
        password encrypts it once more instead."""
        keys = self.checked_keys(keys, len(images)).float()
        return self.run_chunked(self._encrypt, images, keys)

    def _encrypt(self, images: Tensor, passwords: Tensor) -> Tensor:
        return encrypt(self.autoencoder, self.encryptor, images, passwords).clamp(0, 1)


class RiDDLEKeyedFlip(RiDDLE):
    """RiDDLE whose password also picks which latent channels the involution flips, one bit
    a channel, among all of them (our variant): a wrong password encrypts again instead of
    cancelling the encryption."""

    name = "riddle_keyed_flip"
    description = ("RiDDLE with password-chosen flips of every latent channel (our variant, a "
                   "password bit a channel: 96 bits at 64 px): a wrong password encrypts again "
                   "instead of decrypting")
    presets = KEYED_FLIP_PROFILES


def _landmarks(landmarks: Tensor | None, count: int) -> Tensor:
    """``landmarks``, or the canonical template's for images without them."""
    return CANONICAL_LANDMARKS.expand(count, -1, -1) if landmarks is None else landmarks
