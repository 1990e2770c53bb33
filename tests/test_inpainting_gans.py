"""The inpainting GANs (CIAGAN, DeepPrivacy2, each whole-head and eye-keeping): shapes, the
composite keeps every pixel outside its region, the eye holes keep the periocular pixels, toy
fits in seconds and are cached, the same seed gives the same faces, different codes give
different faces."""
from __future__ import annotations

import configparser
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from baselines.ciagan import Ciagan, CiaganKeepEyes
from baselines.ciagan.lightning_model import CiaganModule
from baselines.deepprivacy2 import DeepPrivacy2, DeepPrivacy2KeepEyes
from benchmark.api.inpainting import (Critic, InpaintingUNet, composite, deid_mask,
                                      r1_penalty)
from benchmark.registry import method_class
from data.regions import CANONICAL_LANDMARKS, periocular_mask

SIZE = 32
METHODS = [Ciagan, CiaganKeepEyes, DeepPrivacy2, DeepPrivacy2KeepEyes]
QUIET = {"enable_progress_bar": False}


def _faces(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Smooth toy 'faces' (identity = base colour) with jittered landmarks."""
    g = torch.Generator().manual_seed(seed)
    identity = torch.arange(n) % 6
    colour = (0.2 + 0.6 * torch.rand(6, 3, 1, 1, generator=g))[identity]
    image = (colour + 0.1 * torch.rand(n, 3, SIZE, SIZE, generator=g)).clamp(0, 1)
    landmarks = CANONICAL_LANDMARKS + 0.02 * torch.randn(n, 5, 2, generator=g)
    return {"image": image, "identity": identity, "landmarks": landmarks,
            "label": torch.zeros(n, dtype=torch.long), "index": torch.arange(n)}


class _Split(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int):
        self.data = _faces(n, seed)

    def __len__(self):
        return len(self.data["image"])

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.data.items()}


class _DataModule:
    """What ``fit`` gets from the harness: a training split and nothing else."""

    classes, signs = ["healthy"], []

    def setup(self, stage=None):
        self.train = _Split(24, 0)

    def train_dataloader(self):
        # unshuffled: the harness seeds its loader; a test must not depend on the global RNG
        return DataLoader(self.train, batch_size=8)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> dict[type, object]:
    methods = {}
    for cls in METHODS:
        method = cls(profile="toy", work_dir=tmp_path_factory.mktemp(cls.name),
                     trainer_kwargs=QUIET)
        method.fit(_DataModule())
        methods[cls] = method
    return methods


def _batch(n: int = 6, seed: int = 5) -> dict[str, torch.Tensor]:
    faces = _faces(n, seed)
    return {"image": faces["image"], "landmarks": faces["landmarks"], "index": faces["index"]}


@pytest.mark.parametrize("size", [32, 48, 64])
def test_generator_and_critic_shapes(size):
    x = torch.rand(2, 4, size, size)
    out = InpaintingUNet(4, 8, width=8)(x, torch.randn(2, 8))
    assert out.shape == (2, 3, size, size) and 0 < out.min() and out.max() < 1
    assert Critic(4, 8)(x).shape == (2,)


@pytest.mark.parametrize("cls", METHODS, ids=lambda c: c.name)
def test_composite_keeps_every_pixel_outside_the_region(fitted, cls):
    method, batch = fitted[cls], _batch()
    out = method.anonymize(batch, None)
    assert out.shape == batch["image"].shape and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    region = deid_mask(batch["landmarks"], (SIZE, SIZE), cls.keep_eyes).expand_as(out) > 0
    assert torch.equal(out[~region], batch["image"][~region])  # bit for bit
    assert (out[region] != batch["image"][region]).float().mean() > 0.9  # the rest is repainted


@pytest.mark.parametrize("cls", METHODS, ids=lambda c: c.name)
def test_only_the_keep_eyes_variants_keep_the_periocular_pixels(fitted, cls):
    batch = _batch()
    out = fitted[cls].anonymize(batch, None)
    eyes = periocular_mask(batch["landmarks"], (SIZE, SIZE)).expand_as(out) > 0
    kept = torch.equal(out[eyes], batch["image"][eyes])
    assert kept == cls.keep_eyes


@pytest.mark.parametrize("cls", [Ciagan, DeepPrivacy2], ids=lambda c: c.name)
def test_same_seed_same_faces_in_any_batch_and_codes_follow_the_seed(fitted, cls, tmp_path):
    batch = _batch()
    out = fitted[cls].anonymize(batch, None)
    again = cls(profile="toy", work_dir=tmp_path, trainer_kwargs=QUIET)
    again.fit(_DataModule())
    assert torch.equal(again.anonymize(batch, None), out)  # same seed: same training, same codes
    half = {k: v[3:] for k, v in batch.items()}
    assert torch.allclose(fitted[cls].anonymize(half, None), out[3:], atol=1e-6)  # per image
    other_seed = cls(profile="toy", seed=1)
    other_seed.shapes = fitted[cls].shapes  # the number of target identities
    assert not torch.equal(other_seed.draw_codes(batch["index"]), fitted[cls].draw_codes(batch["index"]))


@pytest.mark.parametrize("cls", [Ciagan, DeepPrivacy2], ids=lambda c: c.name)
def test_different_codes_paint_different_faces(fitted, cls):
    method, batch = fitted[cls], _batch()
    codes = method.draw_codes(torch.tensor([0, 1]))
    if cls is Ciagan:
        codes = torch.tensor([0, 1])  # two distinct target identities
    first = method.inpaint(batch["image"], batch["landmarks"], codes[:1].expand(6, *codes.shape[1:]))
    second = method.inpaint(batch["image"], batch["landmarks"], codes[1:].expand(6, *codes.shape[1:]))
    region = deid_mask(batch["landmarks"], (SIZE, SIZE), False).expand_as(first) > 0
    assert (first[region] - second[region]).abs().mean() > 1e-4


def test_fitted_state_loads_with_weights_only_and_a_second_fit_is_skipped(fitted, tmp_path,
                                                                         monkeypatch):
    method = fitted[CiaganKeepEyes]
    torch.save(method.state_dict(), tmp_path / "state.pt")
    restored = CiaganKeepEyes(profile="toy")
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    batch = _batch()
    assert torch.equal(restored.anonymize(batch, None), method.anonymize(batch, None))
    with pytest.raises(ValueError, match="different config"):
        CiaganKeepEyes(profile="toy", w_identity=2.0).load_state_dict(method.state_dict())
    monkeypatch.setattr("lightning.Trainer.fit", lambda *a, **k: pytest.fail("refitted"))
    cached = CiaganKeepEyes(profile="toy", work_dir=method.work_dir, trainer_kwargs=QUIET)
    cached.fit(_DataModule())
    assert torch.equal(cached.anonymize(batch, None), method.anonymize(batch, None))


def test_fast_dev_run_trains_one_batch_and_caches_nothing(tmp_path):
    method = DeepPrivacy2KeepEyes(profile="toy", work_dir=tmp_path,
                                  trainer_kwargs={"fast_dev_run": True, **QUIET})
    method.fit(_DataModule())
    assert method.anonymize(_batch(2), None).shape == (2, 3, SIZE, SIZE)
    assert not list(tmp_path.rglob("*.pt"))


def test_fast_dev_run_on_generated_mema(tiny_mema):
    from data import MeMaDataModule

    datamodule = MeMaDataModule(tiny_mema, image_size=48, batch_size=8)
    method = Ciagan(profile="toy", trainer_kwargs={"fast_dev_run": True, **QUIET})
    method.fit(datamodule)
    batch = next(iter(datamodule.val_dataloader()))
    out = method.anonymize({k: batch[k] for k in ("image", "landmarks", "index")}, None)
    assert out.shape == batch["image"].shape


def test_ciagan_targets_another_identity_and_its_recogniser_stays_frozen(fitted):
    method = fitted[Ciagan]
    assert method.shapes["num_identities"] == 6
    assert ((method.draw_codes(torch.arange(200)) >= 0) & (method.draw_codes(torch.arange(200)) < 6)).all()
    recogniser = torch.nn.Linear(1, 1)  # stands in; the module freezes what it is given
    module = CiaganModule(method.generator, Critic(8, 8), method.cfg, False,
                          torch.nn.Sequential(recogniser), torch.randn(6, 4))
    source = torch.arange(6).repeat(20)
    targets = module.train_codes({"identity_class": source})
    assert (targets != source).all() and set(targets.tolist()) == set(range(6))
    assert not any(p.requires_grad for p in module.recogniser.parameters())


def test_r1_is_the_squared_gradient_norm_and_composite_selects():
    critic = torch.nn.Linear(4, 1, bias=False)
    x = torch.rand(3, 4, requires_grad=True)
    assert torch.isclose(r1_penalty(critic(x).squeeze(1), x), critic.weight.pow(2).sum())
    mask = torch.tensor([[[[0.0, 1.0]]]])
    out = composite(torch.zeros(1, 3, 1, 2), torch.ones(1, 3, 1, 2), mask)
    assert out[..., 0].eq(0).all() and out[..., 1].eq(1).all()


def test_unknown_options_are_refused_and_every_row_is_registered():
    with pytest.raises(TypeError, match="unknown option"):
        DeepPrivacy2(profile="toy", w_identity=1.0)  # a CIAGAN option
    with pytest.raises(ValueError, match="unknown profile"):
        Ciagan(profile="huge")
    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).parents[1] / "setup.cfg")
    declared = dict(line.split(" = ") for line in
                    cfg["options.entry_points"]["mema_bench.methods"].strip().splitlines())
    for cls in METHODS:
        assert declared[cls.name] == f"{cls.__module__}:{cls.__name__}"
        assert method_class(declared[cls.name])[1] is cls
