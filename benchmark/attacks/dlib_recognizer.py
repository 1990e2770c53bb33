"""dlib's pretrained face recogniser (King, "dlib-ml", JMLR 2009; the ResNet of the
``face_recognition_models`` package): an off-the-shelf attacker nobody in this suite trained.
:class:`DlibAttack` runs the naive attack with it (``dlib_reid_*``) when the ``[dlib]`` extra
is installed and ``--attacks`` names ``dlib``.

The model files are found with ``importlib.util.find_spec`` and loaded by path: importing
``face_recognition_models`` needs ``pkg_resources``, which recent setuptools no longer ship.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.attacks.base import Attack, AttackContext, AttackResult
from benchmark.attacks.naive import reid_specs
from benchmark.scoring import enrolment_split, identity_protocol

#: side of dlib's aligned face chips
CHIP_SIZE = 150
_FILES = {"shape": "shape_predictor_5_face_landmarks.dat",
          "resnet": "dlib_face_recognition_resnet_model_v1.dat"}


def dlib_model_files() -> dict[str, Path] | None:
    """Paths of the model files, or None when dlib or the models are not installed."""
    if importlib.util.find_spec("dlib") is None:
        return None
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    files = {k: folder / name for k, name in _FILES.items()}
    return files if all(p.is_file() for p in files.values()) else None


class DlibRecognizer:
    """128-d dlib face descriptors of ``[B,3,H,W]`` aligned face crops in [0,1]: the 5-point
    shape predictor runs on the whole crop (MeMa faces are aligned already), dlib cuts its
    150 px chip and the ResNet embeds it."""

    def __init__(self, files: dict[str, Path]) -> None:
        import dlib

        self._dlib = dlib
        self.shape = dlib.shape_predictor(str(files["shape"]))
        self.resnet = dlib.face_recognition_model_v1(str(files["resnet"]))

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        out = []
        for image in images.detach().cpu():
            pixels = np.ascontiguousarray(
                (image.clamp(0, 1).permute(1, 2, 0) * 255).round().byte().numpy())
            box = self._dlib.rectangle(0, 0, pixels.shape[1] - 1, pixels.shape[0] - 1)
            chip = self._dlib.get_face_chip(pixels, self.shape(pixels, box), size=CHIP_SIZE)
            out.append(torch.tensor(np.asarray(self.resnet.compute_face_descriptor(chip))))
        return F.normalize(torch.stack(out).float(), dim=1)


class DlibAttack(Attack):
    """The naive attack with dlib's recogniser, identity protocol, clean and de-identified
    enrolment. Opt-in (``--attacks ...,dlib``): dlib embeds one face at a time on the CPU,
    minutes for a quick-profile test split."""

    name = "dlib"
    description = "dlib's pretrained recogniser (off the shelf), clean and de-identified enrolment"
    default = False
    scores = (*reid_specs("dlib_reid", "naive dlib, clean enrolment", pair=False, top5=False),
              *reid_specs("dlib_reid_deid", "naive dlib, de-identified enrolment", pair=False,
                          top5=False))

    def applies(self, ctx: AttackContext) -> bool:
        return dlib_model_files() is not None

    def run(self, ctx: AttackContext) -> AttackResult:
        embed = DlibRecognizer(dlib_model_files()).embed
        identity = ctx.test.identity
        enrol, probe_pos = enrolment_split(identity)
        # only what the identity protocol reads: enrolment galleries and the probes
        probes = torch.zeros(len(identity), 128)
        probes[probe_pos] = ctx.embed(embed, ctx.deid[probe_pos])
        result = AttackResult()
        for name, source in (("dlib_reid", ctx.test.float_images()), ("dlib_reid_deid", ctx.deid_other)):
            gallery = torch.zeros_like(probes)
            gallery[enrol] = ctx.embed(embed, source[enrol])
            scores, chance = identity_protocol(name, gallery, probes, identity, ctx.resamples,
                                               ctx.seed, top_k=(1,))
            result.scores.update(scores)
            result.chance.update(chance)
        return result
