"""``fit_reversible``: FIT (Gu, Luo, Malik, Lee, "Password-conditioned Anonymization and
Deanonymization with Face Identity Transformers", ECCV 2020) as a ``DeIdMethod`` plugin.

The harness's key is the paper's 16-bit password: ``anonymize(batch, keys)`` runs the
transformer with the password, ``recover(images, keys)`` runs the same transformer on the
anonymised images with the bitwise complement. ``fit`` trains the recogniser, then the
transformer, each through a Lightning ``Trainer`` and each cached under ``work_dir``
(``README.md``).
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

import lightning as L
import torch
from torch import Tensor, nn

from benchmark.api.fitted import FittedMethod
from benchmark.api.nn import CosFaceHead
from benchmark.api.recognition import Recogniser, fit_recogniser
from benchmark.api.training import (data_fingerprint, derive_seed, load_stage, make_trainer,
                                    materialize, metrics_line, tensor_loader)

from .config import KEYED_FLIP_PROFILES, PROFILES
from .lightning_model import FITModule
from .torch_model import PasswordTransformer

log = logging.getLogger(__name__)

#: config fields the recogniser depends on (its stage's cache key)
_RECOGNISER_FIELDS = ("id_width", "id_dim", "id_epochs", "id_lr", "batch_size")


class FITReversible(FittedMethod):
    """FIT (ECCV 2020): one password-conditioned face identity transformer anonymises with the
    password and recovers with its complement; a wrong password gives another face.

    Options (keyword, after the contract's ``profile``/``seed``/``work_dir``/``trainer_kwargs``)
    override single fields of :class:`baselines.fit.config.FITConfig`.
    """

    name = "fit_reversible"
    description = ("FIT (ECCV 2020): a 16-bit-password-conditioned face identity transformer; "
                   "the complement password recovers")
    reversible = True
    key_bits = 16
    networks = ("transformer",)
    presets = PROFILES

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.key_bits = self.cfg.password_bits

    def build_networks(self) -> dict[str, nn.Module]:
        cfg = self.cfg
        return {"transformer": PasswordTransformer(cfg.password_bits, cfg.couplings, cfg.width,
                                                   cfg.keyed_flip)}

    # -- training --------------------------------------------------------------------------------
    def fit(self, train) -> None:
        """Train the recogniser, then the transformer; both cached under ``work_dir`` (keyed by
        config, seed and dataset fingerprint), the transformer resumable by epoch."""
        train.setup()
        fingerprint = data_fingerprint(train)
        run_dir = self.stage_path("fit_reversible", None, fingerprint)
        final = run_dir / "fit_reversible.pt" if run_dir else None
        if final is not None and final.exists():
            self.load_state_dict(load_stage(final))
            return
        data = materialize(train.train_dataloader(), ("image", "identity"))
        ids = torch.unique(data["identity"])
        data["identity_class"] = torch.searchsorted(ids, data["identity"])
        with contextlib.ExitStack() as stack:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            run_dir = run_dir or scratch / "fit_reversible"
            path = self.stage_path("fit_recogniser", _RECOGNISER_FIELDS, fingerprint)
            recogniser, head = fit_recogniser(
                self, path.with_suffix(".pt") if path else scratch / "recogniser.pt", data,
                len(ids), "fit/recogniser")
            self._fit_transformer(run_dir, data, recogniser, head)
        self.save_fitted(final)

    def _fit_transformer(self, root: Path, data: dict, recogniser: Recogniser,
                         head: CosFaceHead) -> None:
        L.seed_everything(derive_seed(self.seed, "fit/transformer"), verbose=False)
        transformer = self.build_networks()["transformer"]
        module = FITModule(transformer, recogniser, head, self.cfg)
        last = root / "transformer" / "last.ckpt"
        trainer = make_trainer(root / "transformer", self.cfg.epochs, self.trainer_kwargs,
                               resumable=not self.smoke_run)
        trainer.fit(module, tensor_loader(data, self.cfg.batch_size, True,
                                          derive_seed(self.seed, "fit/transformer data")),
                    ckpt_path=last if last.exists() else None)
        log.info("FIT transformer trained: %s", metrics_line(trainer))
        self.set_networks(transformer=transformer)

    # -- inference -------------------------------------------------------------------------------
    def _transform(self, images: Tensor, passwords: Tensor) -> Tensor:
        return self.run_chunked(lambda x, p: self.transformer(x, p).clamp(0, 1),
                                images, passwords)

    def anonymize(self, batch: dict[str, Tensor], keys: Tensor | None) -> Tensor:
        """``G(x, p)``: the face under the password ``p`` (the key)."""
        images = batch["image"]
        return self._transform(images, self.checked_keys(keys, len(images)).float())

    def recover(self, images: Tensor, keys: Tensor) -> Tensor:
        """``G(y, ~p)``: the same transformer with the complement password; a wrong key runs a
        different password and gives yet another face."""
        return self._transform(images, 1 - self.checked_keys(keys, len(images)).float())


class FITKeyedFlip(FITReversible):
    """FIT with a keyed Haar-detail flip between the halves of its flow (our variant): a wrong
    password of the inverse direction no longer undoes the anonymisation."""

    name = "fit_keyed_flip"
    description = ("FIT with a keyed flip mid-flow (our variant): a wrong password cannot "
                   "cancel the anonymisation")
    presets = KEYED_FLIP_PROFILES
