"""Keyed DDIM (``keyed_ddim``, ``keyed_ddim_keep_eyes``): exact DDIM inversion, the region and
the composite, key handling (reproducible, recovery with the right key, not with a wrong
one) and a diffusion fit in seconds."""
from __future__ import annotations

import configparser
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from benchmark.api.inpainting import deid_mask
from baselines.keyed_ddim.config import make_config
from baselines.keyed_ddim.lightning_model import masked_face
from baselines.keyed_ddim.method import (KeyedDDIM, KeyedDDIMFlip, KeyedDDIMFlipKeepEyes,
                                         KeyedDDIMKeepEyes, canonical_region)
from baselines.keyed_ddim.torch_model import (InpaintingDenoiser, KeyedDDIMProcess, key_draws,
                                              keyed_reflection, mix_key, region_modes,
                                              soft_clip, soft_unclip, unmix_key)
from data.regions import CANONICAL_LANDMARKS

from tests.toy_images import (SIZE, png_round as _png, psnr as _psnr, random_keys,
                              smooth_faces as _faces)


def _keys(n: int, seed: int) -> torch.Tensor:
    return random_keys(n, seed, 64)


def _region(n: int, keep_eyes: bool) -> torch.Tensor:
    return deid_mask(CANONICAL_LANDMARKS.expand(n, 5, 2), (SIZE, SIZE), keep_eyes)


def _toy(cls=KeyedDDIM, **options) -> KeyedDDIM:
    """A toy method whose denoiser predicts small noise (a trained one stays in range too).
    It predicts the noise, not the clean face: an untrained clean-face predictor maps every
    latent to about the same face, which no inversion can undo (a trained one does not)."""
    torch.manual_seed(0)
    method = cls(profile="toy", **{"prediction_type": "epsilon", **options})
    denoiser = method.build_networks()["denoiser"]
    torch.nn.init.normal_(denoiser.unet.unet.conv_out.weight, std=0.01)
    method.load_state_dict({"config": method.config(), "denoiser": denoiser.state_dict()})
    return method


@pytest.mark.parametrize("corrector_steps", [(0,), (4,)])
def test_fixed_point_inversion_is_exact_where_plain_ddim_inversion_is_not(corrector_steps):
    torch.manual_seed(1)
    cfg = make_config("toy", corrector_steps=corrector_steps, prediction_type="epsilon")
    denoiser = InpaintingDenoiser(cfg).eval()
    torch.nn.init.normal_(denoiser.unet.unet.conv_out.weight, std=0.02)
    process = KeyedDDIMProcess(denoiser, cfg)
    mask = _region(4, False)
    face, context = masked_face(_faces(4), mask)
    with torch.no_grad():
        error = (process.regenerate(process.invert(face, context, mask), context, mask)
                 - face).abs().max()
    if corrector_steps == (0,):
        assert error > 0.1  # plain DDIM inversion: the noise estimate of the wrong point
    else:
        assert error < 2e-3


def test_corrections_are_per_inversion_step_and_the_last_entry_holds_deeper():
    assert [make_config("toy", corrector_steps=(5, 2)).corrections(i) for i in range(4)] == \
        [5, 2, 2, 2]
    assert [make_config("toy", corrector_steps=3).corrections(i) for i in range(3)] == [3, 3, 3]


def test_key_draws_are_the_keys_and_unmix_undoes_mix():
    keys = _keys(3, 0)
    noise, flips = key_draws(keys, (3, 8, 8), 5)
    assert flips.shape == (3, 3, 5) and set(flips.unique().tolist()) == {0.0, 1.0}
    again = key_draws(keys.clone(), (3, 8, 8), 5)
    assert torch.equal(noise, again[0]) and torch.equal(flips, again[1])  # the key fixes both
    assert torch.equal(noise, key_draws(keys, (3, 8, 8))[0])  # flips do not change the noise
    flipped = keys.clone()
    flipped[:, 63] = 1 - flipped[:, 63]  # the last of the 64 bits matters too
    assert not torch.allclose(noise, key_draws(flipped, (3, 8, 8))[0])
    latent, mask = torch.randn(3, 3, 8, 8), torch.ones(3, 1, 8, 8)
    mixed = mix_key(latent, noise, mask, 0.8)
    assert torch.allclose(unmix_key(mixed, noise, mask, 0.8), latent, atol=1e-5)


def test_keyed_reflection_is_an_involution_inside_the_region_and_keys_compose_by_xor():
    region = _region(1, True)[0, 0] > 0
    basis = region_modes(region, 16)
    assert torch.allclose(basis.t() @ basis, torch.eye(16), atol=1e-5)  # orthonormal
    latent = torch.randn(4, 3, SIZE, SIZE) * region
    a, b = (torch.randint(0, 2, (4, 3, 16), generator=torch.Generator().manual_seed(s)).float()
            for s in (0, 1))
    flipped = keyed_reflection(latent, a, basis, region)
    assert torch.equal(flipped[:, :, ~region], latent[:, :, ~region])  # nothing outside moves
    assert torch.allclose(flipped.norm(), latent.norm())  # orthogonal
    assert torch.allclose(keyed_reflection(flipped, a, basis, region), latent, atol=1e-5)
    # a wrong key b leaves R_b R_a = R_(a xor b): another flip, never the identity map
    twice = keyed_reflection(flipped, b, basis, region)
    assert torch.allclose(twice, keyed_reflection(latent, (a - b).abs(), basis, region),
                          atol=1e-5)
    with pytest.raises(ValueError, match="key_modes"):
        region_modes(region, int(region.sum()) + 1)


@pytest.mark.parametrize("cls", [KeyedDDIM, KeyedDDIMKeepEyes, KeyedDDIMFlipKeepEyes])
def test_shapes_and_pixels_outside_the_region_bit_identical(cls):
    method = _toy(cls)
    images, keys = _faces(5), _keys(5, 1)
    out = method.anonymize({"image": images}, keys)
    assert out.shape == images.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    outside = _region(5, cls.keep_eyes) == 0
    assert torch.equal(out[outside.expand_as(out)], images[outside.expand_as(images)])
    if cls.keep_eyes:  # the periocular pixels are outside the eye-keeping region
        assert outside.sum() > _region(5, False).eq(0).sum()
    assert (out - images).abs().amax((1, 2, 3)).min() > 1e-2  # every face changed


@pytest.mark.parametrize("cls", [KeyedDDIM, KeyedDDIMFlip])
def test_same_key_reproducible_right_key_recovers_wrong_key_does_not(cls):
    method = _toy(cls, key_mix=0.05)  # a small mix keeps the toy faces inside [0, 1]
    images, keys = _faces(6), _keys(6, 3)
    anonymised = method.anonymize({"image": images}, keys)
    assert torch.equal(anonymised, method.anonymize({"image": images}, keys))
    other = method.anonymize({"image": images}, _keys(6, 4))
    assert (other - anonymised).abs().mean() > 1e-3  # another key, another face
    recovered = _psnr(method.recover(_png(anonymised), keys), images)
    wrong = _psnr(method.recover(_png(anonymised), _keys(6, 5)), images)
    assert recovered > 40 and recovered > wrong + 10 and recovered > _psnr(anonymised, images) + 10


def test_soft_clip_is_the_identity_inside_and_survives_8_bit_rounding_where_a_clamp_does_not():
    values = torch.linspace(-0.2, 1.2, 1401)
    clipped = soft_clip(values, 0.2)
    assert 0 < clipped.min() and clipped.max() < 1  # a file can hold it
    inside = (values >= 0.2) & (values <= 0.8)
    assert torch.equal(clipped[inside], values[inside])
    assert (soft_unclip(_png(clipped), 0.2) - values).abs().max() < 0.03  # a tenth of the clamp's
    assert (_png(soft_clip(values, 0.0)) - values).abs().max() > 0.19  # the clamp loses 0.2
    assert torch.equal(soft_unclip(values, 0.0), values)


def test_the_soft_clip_recovers_faces_drawn_out_of_range():
    images, keys = _faces(6), _keys(6, 3)
    psnr = {}
    for margin in (0.0, 0.2):
        method = _toy(key_mix=0.8, clip_margin=margin)  # a strong mix: out of [0, 1]
        anonymised = method.anonymize({"image": images}, keys)
        assert 0 <= anonymised.min() and anonymised.max() <= 1
        psnr[margin] = _psnr(method.recover(_png(anonymised), keys), images)
    assert psnr[0.2] > psnr[0.0] + 5


def test_the_flip_variant_applies_the_keyed_reflection():
    images, keys = _faces(4), _keys(4, 6)
    plain = _toy(KeyedDDIM, key_mix=0.05).anonymize({"image": images}, keys)
    flipped = _toy(KeyedDDIMFlip, key_mix=0.05).anonymize({"image": images}, keys)
    assert (flipped - plain).abs().mean() > 1e-3  # same denoiser and key, another face


def test_keys_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match="keys must be"):
        _toy().anonymize({"image": _faces(2)}, torch.zeros(2, 16))


def test_unknown_options_are_refused_and_both_rows_are_registered():
    with pytest.raises(TypeError, match="unknown option"):
        KeyedDDIM(profile="toy", strength=2.0)
    with pytest.raises(ValueError, match="unknown profile"):
        KeyedDDIM(profile="huge")
    assert KeyedDDIMKeepEyes(profile="toy").config()["keep_eyes"]
    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).parents[1] / "setup.cfg")
    declared = dict(line.split(" = ") for line in
                    cfg["options.entry_points"]["mema_bench.methods"].strip().splitlines())
    assert KeyedDDIMFlipKeepEyes(profile="toy").config()["key_modes"] == 64
    for cls in (KeyedDDIM, KeyedDDIMKeepEyes, KeyedDDIMFlip, KeyedDDIMFlipKeepEyes):
        assert declared[cls.name] == f"{cls.__module__}:{cls.__name__}"


class _ToyDataModule:
    """Eight faces with canonical landmarks, at 32 px."""

    classes, signs = ["healthy"], []

    def setup(self, stage=None):
        self.images = _faces(8, seed=5)
        self.landmarks = CANONICAL_LANDMARKS.expand(8, 5, 2).clone()

    def train_dataloader(self):
        data = TensorDataset(self.images, self.landmarks)
        return [{"image": x, "landmarks": m} for x, m in DataLoader(data, batch_size=4)]


def test_fast_dev_run_fits_in_seconds_and_is_not_cached(tmp_path):
    method = KeyedDDIM(profile="toy", work_dir=tmp_path, trainer_kwargs={
        "fast_dev_run": True, "enable_progress_bar": False, "accelerator": "cpu"})
    method.fit(_ToyDataModule())
    out = method.anonymize({"image": _faces(2)}, _keys(2, 0))
    assert out.shape == (2, 3, SIZE, SIZE) and torch.isfinite(out).all()
    assert not list(tmp_path.rglob("*.pt"))  # a one-batch fit is never cached


def test_toy_fit_is_cached_and_new_sampling_settings_reuse_the_denoiser(tmp_path):
    kwargs = {"work_dir": tmp_path, "trainer_kwargs": {"enable_progress_bar": False}}
    first = KeyedDDIM(profile="toy", **kwargs)
    first.fit(_ToyDataModule())
    assert len(list(tmp_path.rglob("*.pt"))) == 2  # the denoiser stage and the fitted method
    resampled = KeyedDDIM(profile="toy", key_mix=0.5, **kwargs)
    resampled.fit(_ToyDataModule())  # loads the denoiser stage: no training
    for a, b in zip(first.denoiser.state_dict().values(),
                    resampled.denoiser.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="different config"):
        resampled.load_state_dict(first.state_dict())


def test_eye_floor_probes_swap_the_region_and_keep_the_eye_holes():
    """``benchmarks/eye_floor.py``: another face of the batch fills the keyed DDIM region; with
    eye holes, the source's periocular pixels stay."""
    from benchmarks.eye_floor import EyeSwap, HeadSwap

    images, size = torch.rand(4, 3, 64, 64), (64, 64)
    head, ringed = (canonical_region(size, keep)[0, 0] > 0 for keep in (False, True))
    holes = head & ~ringed  # the eye holes
    other = images.roll(2, 0)  # half a batch away
    swapped = EyeSwap().anonymize({"image": images}, None)
    assert holes.any() and torch.equal(swapped[..., holes], images[..., holes])
    assert torch.equal(swapped[..., ringed], other[..., ringed])
    assert torch.equal(swapped[..., ~head], images[..., ~head])
    control = HeadSwap().anonymize({"image": images}, None)
    assert torch.equal(control[..., head], other[..., head])
    assert torch.equal(control[..., ~head], images[..., ~head])
