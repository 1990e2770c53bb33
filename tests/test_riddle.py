"""RiDDLE (``riddle``): the involutive encryptor, password handling, recovery from a PNG file,
reproducibility and a fast_dev_run fit in seconds."""
from __future__ import annotations

import pytest
import torch
from torchvision.io import decode_png, read_file, write_png

from baselines.riddle.method import RiDDLE
from baselines.riddle.torch_model import LatentEncryptor
from benchmark.registry import load_method

from tests.toy_images import (SIZE, ToyDataModule, psnr as _psnr, random_keys,
                              smooth_faces as _faces)


def _keys(n: int, seed: int) -> torch.Tensor:
    return random_keys(n, seed, 64)


@pytest.fixture(scope="module")
def method() -> RiDDLE:
    """A toy RiDDLE: the autoencoder's linear code from the toy faces' principal components,
    the encryptor's shifts random (not zero-initialised), so every password moves the face as a
    trained one does."""
    torch.manual_seed(0)
    riddle = RiDDLE(profile="toy")
    riddle.image_size = SIZE
    nets = riddle.build_networks()
    nets["autoencoder"].init_from_pca(_faces(64, seed=9))
    for step in nets["encryptor"].steps:
        torch.nn.init.normal_(step.out.weight, std=0.05)
    riddle.load_state_dict({"config": riddle.config(), "image_size": SIZE,
                            **{k: v.state_dict() for k, v in nets.items()}})
    return riddle


def test_shapes_range_and_same_password_reproducible(method):
    images, keys = _faces(6), _keys(6, 1)
    out = method.anonymize({"image": images}, keys)
    assert out.shape == images.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, method.anonymize({"image": images}, keys))  # same password
    other = method.anonymize({"image": images}, _keys(6, 2))
    assert (other - out).abs().mean() > 1e-2  # another password, another face


def test_encryptor_is_its_own_inverse_for_every_password():
    torch.manual_seed(1)
    encryptor = LatentEncryptor(8, 4, 64, couplings=2, dim=16, heads=2, flipped=3)
    for step in encryptor.steps:
        torch.nn.init.normal_(step.out.weight, std=0.5)
    latents, keys = torch.randn(5, 8, 2, 2), _keys(5, 3)
    with torch.no_grad():
        encrypted = encryptor(latents, keys)
        assert (encrypted - latents).abs().mean() > 0.1
        assert torch.allclose(encryptor(encrypted, keys), latents, atol=1e-5)


def test_keyed_flip_makes_a_wrong_password_encrypt_again_instead_of_cancelling():
    """Even where the couplings ignore the password (the case that let a wrong key decrypt the
    face), a wrong password ``k`` decrypts ``M_p(w)`` to ``M_{k xor p}(w)``: another encryption."""
    torch.manual_seed(2)
    encryptor = LatentEncryptor(8, 4, 64, couplings=2, dim=16, heads=2, flipped=4,
                                keyed_flip=True)
    for step in encryptor.steps:
        torch.nn.init.normal_(step.out.weight, std=0.5)
        torch.nn.init.zeros_(step.password.weight)  # T no longer depends on the password
    latents, p, k = torch.randn(5, 8, 2, 2), _keys(5, 5), _keys(5, 6)
    k[:, 0] = 1 - p[:, 0]  # differ in at least one flipped channel's bit
    with torch.no_grad():
        wrong = encryptor(encryptor(latents, p), k)
        assert (wrong - latents).abs().mean() > 0.1
        assert torch.allclose(wrong, encryptor(latents, (k + p) % 2), atol=1e-5)


def test_right_password_recovers_through_a_png_file_better_than_a_wrong_one(method, tmp_path):
    images, keys = _faces(4, seed=3), _keys(4, 4)
    anonymised = method.anonymize({"image": images}, keys)
    stored = []
    for i, image in enumerate(anonymised):  # what a user keeps: 8-bit PNG files
        path = str(tmp_path / f"{i}.png")
        write_png((image * 255).round().to(torch.uint8), path)
        stored.append(decode_png(read_file(path)).float() / 255)
    stored = torch.stack(stored)
    wrong = keys.clone()
    wrong[:, 7] = 1 - wrong[:, 7]  # one bit off
    right_psnr = _psnr(method.recover(stored, keys), images)
    assert right_psnr > 30
    assert right_psnr > _psnr(method.recover(stored, wrong), images) + 5
    assert right_psnr > _psnr(anonymised, images) + 5


def test_keys_of_the_wrong_length_are_refused(method):
    with pytest.raises(ValueError, match="keys"):
        method.anonymize({"image": _faces(2)}, torch.zeros(2, 16))



@pytest.mark.parametrize("composite", [False, True])
def test_fast_dev_run_fits_and_caches_nothing(tmp_path, composite):
    riddle = RiDDLE(profile="toy", work_dir=tmp_path, composite=composite,
                    trainer_kwargs={"fast_dev_run": True, "accelerator": "cpu"})
    riddle.fit(ToyDataModule())
    images, keys = _faces(2), _keys(2, 7)
    anonymised = riddle.anonymize({"image": images}, keys)
    assert anonymised.shape == (2, 3, SIZE, SIZE)
    assert riddle.recover(anonymised, keys).shape == (2, 3, SIZE, SIZE)
    assert not list(tmp_path.rglob("*.pt"))


def test_registered_by_module_path():
    riddle = load_method("baselines.riddle.method:RiDDLE", profile="toy")
    assert isinstance(riddle, RiDDLE) and riddle.reversible and riddle.key_bits >= 64


def test_keyed_flip_variant_is_registered_with_every_channel_flippable_by_its_own_bit():
    variant, plain = load_method("riddle_keyed_flip", profile="quick"), RiDDLE()
    assert variant.cfg.keyed_flip and not plain.cfg.keyed_flip
    assert variant.cfg.flipped_channels == variant.cfg.latent_channels == variant.key_bits == 96
    assert plain.key_bits == 64
