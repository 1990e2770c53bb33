"""Classic baselines and k-Same-Select: output contract, regions, k-Same averaging, caching."""
from __future__ import annotations

from importlib.metadata import entry_points

import pytest
import torch

from baselines.classic import (
    Blur,
    BlurKeepEyes,
    Identity,
    Mask,
    MaskKeepEyes,
    Pixelate,
    PixelateKeepEyes,
    region_mask,
)
from baselines.ksame import KSameSelect
from benchmark.api import DeIdMethod
from data.regions import CANONICAL_LANDMARKS, face_mask, periocular_mask

CLASSIC = [Identity, Blur, Pixelate, Mask, BlurKeepEyes, PixelateKeepEyes, MaskKeepEyes]
OBFUSCATIONS = [Blur, Pixelate, Mask, BlurKeepEyes, PixelateKeepEyes, MaskKeepEyes]
SIZE = 32


def _batch(n: int = 4, size: int = SIZE, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    landmarks = CANONICAL_LANDMARKS.expand(n, 5, 2).clone()
    landmarks += 0.02 * torch.randn(n, 5, 2, generator=gen)  # faces not all at one place
    return {"image": torch.rand(n, 3, size, size, generator=gen), "landmarks": landmarks,
            "index": torch.arange(n)}


@pytest.mark.parametrize("cls", CLASSIC)
def test_classic_output_contract(cls):
    method = cls()
    assert isinstance(method, DeIdMethod) and method.key_bits == 0 and not method.reversible
    assert method.description
    batch = _batch()
    out = method.anonymize(batch, None)
    assert out.shape == batch["image"].shape and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert out is not batch["image"]


def test_builtins_are_registered_entry_points():
    names = {ep.name: ep.value for ep in entry_points(group="mema_bench.methods")}
    for name, cls in [("identity", Identity), ("blur", Blur), ("blur_keep_eyes", BlurKeepEyes),
                      ("pixelate_keep_eyes", PixelateKeepEyes), ("mask", Mask),
                      ("mask_keep_eyes", MaskKeepEyes), ("ksame_select", KSameSelect)]:
        assert names[name] == f"{cls.__module__}:{cls.__name__}"


@pytest.mark.parametrize("cls", OBFUSCATIONS)
def test_obfuscation_changes_region_and_keeps_the_rest(cls):
    method = cls()
    batch = _batch()
    out = method.anonymize(batch, None)
    size = (SIZE, SIZE)
    face = face_mask(batch["landmarks"], size).bool().expand_as(out)
    eyes = periocular_mask(batch["landmarks"], size).bool().expand_as(out)
    changed = face & ~eyes
    assert torch.equal(out[~face], batch["image"][~face])  # outside the head: bit-identical
    # random noise is far from its blur, block mean or a grey fill almost everywhere
    assert (out[changed] - batch["image"][changed]).abs().mean() > 0.1
    if method.region == "face_except_eyes":
        assert torch.equal(out[eyes], batch["image"][eyes])
    else:
        assert (out[eyes] - batch["image"][eyes]).abs().mean() > 0.1


def test_keep_eyes_variants_use_their_region_and_report_config():
    assert BlurKeepEyes().config() == {"sigma": 4.0, "region": "face_except_eyes"}
    assert Pixelate(block=4).config() == {"block": 4, "region": "face"}
    assert Mask(fill=(1, 0, 0), region="face_except_eyes").config()["fill"] == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="region"):
        Blur(region="eyes")
    with pytest.raises(ValueError, match="sigma"):
        Blur(sigma=0)
    with pytest.raises(ValueError, match="fill"):
        Mask(fill=2.0)


def test_strength_scales_with_image_size():
    # the same relative blur at 32 and 64 px: smooth each, compare at 32 px
    big = _batch(2, 64)
    small = {**big, "image": torch.nn.functional.avg_pool2d(big["image"], 2)}
    blur = Blur(region="face")
    down = torch.nn.functional.avg_pool2d(blur.obfuscate(big["image"]), 2)
    assert (down - blur.obfuscate(small["image"])).abs().mean() < 0.02
    pix = Pixelate().obfuscate(torch.rand(1, 3, 64, 64))
    assert pix[0, 0, :8, :8].unique().numel() == 1 and pix[0, 0, :9, :9].unique().numel() > 1


def test_mask_fills_region_with_value():
    batch = _batch()
    out = Mask(fill=0.25).anonymize(batch, None)
    mask = region_mask(batch, "face", "test").expand_as(out)
    assert torch.all(out[mask] == 0.25)


def test_missing_landmarks_is_a_clear_error():
    with pytest.raises(KeyError, match="Blur.*landmarks"):
        Blur().anonymize({"image": torch.rand(1, 3, 8, 8)}, None)


# -- k-Same-Select ----------------------------------------------------------------------------
class _FakeMeMa:
    """Stand-in for MeMaDataModule: class c tints the eye band by a class colour, so a small
    CNN can learn it in a few epochs; each image has its own random texture (identity)."""

    classes = ["healthy", "ptosis", "red_eye"]

    def __init__(self, n: int = 96, size: int = SIZE, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 3
        images = 0.3 + 0.4 * torch.rand(n, 3, size, size, generator=gen)
        band = slice(int(0.3 * size), int(0.5 * size))
        for c in range(3):
            images[self.labels == c, c, band, :] = 0.95
        self.images = images

    def train_dataloader(self):
        return [{"image": self.images[i:i + 16], "label": self.labels[i:i + 16],
                 "landmarks": CANONICAL_LANDMARKS.expand(len(self.images[i:i + 16]), 5, 2)}
                for i in range(0, len(self.images), 16)]


@pytest.fixture(scope="module")
def fitted_ksame():
    method = KSameSelect(k=4, classifier_epochs=15, seed=1,
                         trainer_kwargs={"enable_progress_bar": False, "accelerator": "cpu"})
    method.fit(_FakeMeMa())
    return method


def test_ksame_output_is_mean_of_k_nearest_faces_of_predicted_class(fitted_ksame):
    method = fitted_ksame
    probe_dm = _FakeMeMa(n=12, seed=5)
    batch = {"image": probe_dm.images, "landmarks": CANONICAL_LANDMARKS.expand(12, 5, 2),
             "index": torch.arange(12)}
    predicted = method.predict_class(batch["image"], batch["landmarks"])
    assert (predicted == probe_dm.labels).float().mean() >= 0.9  # the class picker learned
    out = method.anonymize(batch, None)
    assert out.shape == batch["image"].shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1

    gallery = method.gallery.float() / 255
    face = region_mask(batch, "face", "test")[:, 0]
    for i in range(12):
        members = gallery[method.gallery_labels == predicted[i]]
        dist = ((members - batch["image"][i]) ** 2).flatten(1).sum(1)
        expected = members[dist.argsort()[:4]].mean(0)
        torch.testing.assert_close(out[i][:, face[i]], expected[:, face[i]])
        torch.testing.assert_close(out[i][:, ~face[i]], batch["image"][i][:, ~face[i]], rtol=0, atol=0)


def test_ksame_state_dict_round_trip(fitted_ksame):
    batch = _batch(5)
    restored = KSameSelect(k=4)
    restored.load_state_dict(fitted_ksame.state_dict())
    torch.testing.assert_close(restored.anonymize(batch, None), fitted_ksame.anonymize(batch, None))
    assert restored.gallery.dtype == torch.uint8 and len(restored.gallery) == 96
    assert fitted_ksame.config() == {"k": 4, "region": "face", "max_gallery": 4000,
                                     "classifier_epochs": 15, "fit_recipe": 2}


def test_ksame_unfitted_and_bad_options():
    with pytest.raises(RuntimeError, match="fit"):
        KSameSelect().anonymize(_batch(), None)
    with pytest.raises(ValueError, match="k must"):
        KSameSelect(k=0)
    with pytest.raises(ValueError, match="region"):
        KSameSelect(region="nose")


def test_baselines_on_tiny_mema_with_harness_batches(tiny_mema):
    """Fit on the real datamodule, then anonymize label-free batches as the harness sends them."""
    from benchmark.api import METHOD_INPUT_KEYS
    from data import MeMaDataModule

    dm = MeMaDataModule(tiny_mema, image_size=48, batch_size=8)
    dm.setup()
    ksame = KSameSelect(k=3, classifier_epochs=2,
                        trainer_kwargs={"enable_progress_bar": False, "accelerator": "cpu"})
    ksame.fit(dm)
    assert len(ksame.gallery) == len(dm.dataset("train")) and ksame.num_classes == len(dm.classes)
    batch = next(iter(dm.test_dataloader()))
    stripped = {key: batch[key] for key in METHOD_INPUT_KEYS}
    for method in [ksame, *(cls() for cls in CLASSIC)]:
        out = method.anonymize(stripped, None)
        assert out.shape == batch["image"].shape and 0 <= out.min() and out.max() <= 1
