"""PRO-Face S (Yuan, Liang, Pu, Zhang, Leng, Wu, Wang, Gao, "PRO-Face S: Privacy-preserving
Reversible Obfuscation of Face Images via Secure Flow", IEEE TCSVT 2024) as ``DeIdMethod``
plugins, one per classic obfuscation it imitates: ``proface_blur``,
``proface_pixelate_keep_eyes``, ``proface_mask``.

``anonymize(batch, keys)`` runs the keyed flow forward with the pad of each image's key;
``recover(images, keys)`` runs it backwards. ``fit`` computes the classic's output of every
training face once (``baselines.classic``: the target the flow imitates) and trains the flow
through a Lightning ``Trainer``, cached under ``work_dir`` (``README.md``).
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

import lightning as L
import torch
from torch import Tensor, nn

from baselines import classic
from benchmark.api.fitted import FittedMethod
from benchmark.api.training import (data_fingerprint, derive_seed, load_stage, make_trainer,
                                    materialize, metrics_line, tensor_loader)

from .config import PROFILES, ProFaceConfig
from .lightning_model import SecureFlowModule
from .torch_model import SecureFlow, key_pad

log = logging.getLogger(__name__)

#: the classic baselines a PRO-Face S row can imitate, by their registered names
CLASSICS = {
    "blur": classic.Blur, "blur_keep_eyes": classic.BlurKeepEyes,
    "pixelate": classic.Pixelate, "pixelate_keep_eyes": classic.PixelateKeepEyes,
    "mask": classic.Mask, "mask_keep_eyes": classic.MaskKeepEyes,
}


def obfuscate(data: dict[str, Tensor], obfuscation: str, chunk: int = 256) -> Tensor:
    """The classic ``obfuscation``'s output (uint8) for uint8 ``data["image"]`` with its
    landmarks: the flow's training target."""
    if obfuscation not in CLASSICS:
        raise ValueError(f"unknown obfuscation {obfuscation!r}; choose one of {sorted(CLASSICS)}")
    method = CLASSICS[obfuscation]()
    parts = []
    for start in range(0, len(data["image"]), chunk):
        batch = {"image": data["image"][start:start + chunk].float() / 255,
                 "landmarks": data["landmarks"][start:start + chunk]}
        parts.append((method.anonymize(batch, None) * 255).round().to(torch.uint8))
    return torch.cat(parts)


class ProFaceS(FittedMethod):
    """PRO-Face S (TCSVT 2024): a keyed invertible flow whose output imitates a classic
    obfuscation (``obfuscation``) and which the key undoes. Options override single fields of
    :class:`baselines.proface.config.ProFaceConfig`."""

    name = "proface_blur"
    description = ("PRO-Face S (TCSVT 2024): a keyed invertible flow that looks like the "
                   "blurred face; the 64-bit key recovers the original")
    reversible = True
    key_bits = 64
    networks = ("flow",)
    presets = PROFILES
    #: the classic this row imitates (the config's default ``obfuscation``)
    obfuscation = "blur"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.key_bits = self.cfg.key_bits

    def make_config(self, profile: str, **options) -> ProFaceConfig:
        return super().make_config(profile, **{"obfuscation": self.obfuscation, **options})

    def build_networks(self) -> dict[str, nn.Module]:
        cfg = self.cfg
        return {"flow": SecureFlow(cfg.levels, cfg.width, cfg.min_gain, cfg.pad, cfg.lock)}

    # -- training --------------------------------------------------------------------------------
    def fit(self, train) -> None:
        """Train the flow on the training faces and their classic obfuscation; cached under
        ``work_dir`` (keyed by config, seed and dataset fingerprint), resumable by epoch."""
        train.setup()
        fingerprint = data_fingerprint(train)
        run_dir = self.stage_path("proface", None, fingerprint)
        final = run_dir / "proface.pt" if run_dir else None
        if final is not None and final.exists():
            self.load_state_dict(load_stage(final))
            return
        data = materialize(train.train_dataloader(), ("image", "landmarks"))
        data["obfuscated"] = obfuscate(data, self.cfg.obfuscation)
        with contextlib.ExitStack() as stack:
            root = run_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
            self._fit_flow(root, data)
        self.save_fitted(final)

    def _fit_flow(self, root: Path, data: dict[str, Tensor]) -> None:
        L.seed_everything(derive_seed(self.seed, "proface/flow"), verbose=False)
        flow = self.build_networks()["flow"]
        flow.set_energy_limit(data["image"].float() / 255, self.cfg.lock_margin)
        last = root / "flow" / "last.ckpt"
        trainer = make_trainer(root / "flow", self.cfg.epochs, self.trainer_kwargs,
                               resumable=not self.smoke_run)
        trainer.fit(SecureFlowModule(flow, self.cfg),
                    tensor_loader(data, self.cfg.batch_size, True,
                                  derive_seed(self.seed, "proface/flow data")),
                    ckpt_path=last if last.exists() else None)
        log.info("PRO-Face S flow trained: %s", metrics_line(trainer))
        self.set_networks(flow=flow)

    # -- inference -------------------------------------------------------------------------------
    def _pads(self, images: Tensor, keys: Tensor | None) -> Tensor:
        keys = self.checked_keys(keys, len(images))
        return key_pad(keys.cpu(), SecureFlow.pad_size(images))

    def anonymize(self, batch: dict[str, Tensor], keys: Tensor | None) -> Tensor:
        """The face protected under its key: looks like the classic's output."""
        images = batch["image"]
        return self.run_chunked(lambda x, pad: self.flow(x, pad).clamp(0, 1),
                                images, self._pads(images, keys))

    def recover(self, images: Tensor, keys: Tensor) -> Tensor:
        """The flow run backwards with each key's pad; a wrong key subtracts another pad,
        which the inverse amplifies into noise."""
        return self.run_chunked(lambda y, pad: self.flow.inverse(y, pad).clamp(0, 1),
                                images, self._pads(images, keys))


class ProFacePixelateKeepEyes(ProFaceS):
    """PRO-Face S imitating the pixelation of the face with the periocular region kept."""

    name = "proface_pixelate_keep_eyes"
    description = ("PRO-Face S (TCSVT 2024): a keyed invertible flow that looks like the "
                   "pixelated face, eyes kept; the 64-bit key recovers the original")
    obfuscation = "pixelate_keep_eyes"


class ProFaceMask(ProFaceS):
    """PRO-Face S imitating the solid grey fill of the face."""

    name = "proface_mask"
    description = ("PRO-Face S (TCSVT 2024): a keyed invertible flow that looks like the "
                   "grey-masked face; the 64-bit key recovers the original")
    obfuscation = "mask"
