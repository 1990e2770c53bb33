"""FIT (``fit_reversible``): the password scheme, exact recovery with the complement, storage,
wrong passwords, reproducibility, caching and a toy fit in seconds."""
from __future__ import annotations

import pytest
import torch

from baselines.fit.method import FITReversible
from baselines.fit.torch_model import PasswordTransformer, keyed_flip, password_code
from benchmark.registry import load_method

from tests.toy_images import (SIZE, ToyDataModule, png_round as _png, psnr as _psnr,
                              random_keys, smooth_faces as _faces)


def _keys(n: int, seed: int) -> torch.Tensor:
    return random_keys(n, seed, 16)


@pytest.fixture(scope="module")
def method() -> FITReversible:
    """A toy FIT whose transformer has random (not zero-initialised) shifts: every password
    moves the face, as a trained one does."""
    torch.manual_seed(0)
    fit = FITReversible(profile="toy")
    transformer = fit.build_networks()["transformer"]
    for step in transformer.steps:
        torch.nn.init.normal_(step.out.weight, std=0.005)
    fit.load_state_dict({"config": fit.config(), "transformer": transformer.state_dict()})
    return fit


def test_password_and_its_complement_share_the_code_with_opposite_directions():
    keys = _keys(8, 0)
    direction, code = password_code(keys)
    inv_direction, inv_code = password_code(1 - keys)
    assert torch.equal(inv_direction, -direction) and torch.equal(inv_code, code)
    assert set(direction.tolist()) <= {-1.0, 1.0}


def test_shapes_range_and_reproducible(method):
    images, keys = _faces(6), _keys(6, 1)
    out = method.anonymize({"image": images}, keys)
    assert out.shape == images.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, method.anonymize({"image": images}, keys))  # same password, same face
    assert _psnr(out, images) < 40  # the face changed
    other = method.anonymize({"image": images}, _keys(6, 2))
    assert (other - out).abs().mean() > 1e-3  # another password, another face


def test_complement_password_inverts_the_transformer_exactly(method):
    images, keys = _faces(6), _keys(6, 3)
    transformer = method.transformer
    with torch.no_grad():
        anonymised = transformer(images, keys)  # unclipped: the mechanism itself
        assert (anonymised - images).abs().mean() > 0.02
        assert (transformer(anonymised, 1 - keys) - images).abs().max() < 1e-4


def test_recovery_from_png_beats_the_anonymised_image(method):
    images, keys = _faces(6), _keys(6, 3)
    anonymised = method.anonymize({"image": images}, keys)
    from_png = method.recover(_png(anonymised), keys)
    assert _psnr(from_png, images) > 40 > _psnr(anonymised, images) + 10


def test_wrong_password_gives_another_face(method):
    images, keys = _faces(6), _keys(6, 4)
    anonymised = method.anonymize({"image": images}, keys)
    wrong = keys.clone()
    wrong[:, 5] = 1 - wrong[:, 5]  # one bit off
    assert _psnr(method.recover(anonymised, wrong), images) < 40


def test_keyed_flip_is_an_orthogonal_involution():
    z, code = torch.randn(4, 12, 5, 5), password_code(_keys(4, 5))[1]
    flipped = keyed_flip(z, code)
    assert (flipped - z).abs().mean() > 0.1
    assert torch.allclose(keyed_flip(flipped, code), z, atol=1e-5)
    assert torch.allclose(flipped.norm(dim=1), z.norm(dim=1), atol=1e-4)


@pytest.mark.parametrize("keyed", [False, True])
def test_only_the_keyed_flip_keeps_a_wrong_password_from_cancelling(keyed):
    """Where the learned steps ignore the password, a wrong password of the inverse direction
    recovers the face exactly (the leak of the plain flow); the keyed flip leaves another face."""
    torch.manual_seed(3)
    transformer = PasswordTransformer(16, 2, 8, keyed_flip=keyed)
    for step in transformer.steps:
        torch.nn.init.normal_(step.out.weight, std=0.05)
        torch.nn.init.zeros_(step.password.weight)  # the steps no longer read the password
    images, keys = _faces(6), _keys(6, 6)
    wrong = keys.clone()
    wrong[:, 1] = 1 - wrong[:, 1]  # same direction bit, one flipped detail sign differs
    with torch.no_grad():
        stored = transformer(images, keys)
        assert (transformer(stored, 1 - keys) - images).abs().max() < 1e-4
        error = (transformer(stored, 1 - wrong) - images).abs().mean()
    assert error > 1e-3 if keyed else error < 1e-5


def test_transformer_rejects_wrong_password_shape():
    with pytest.raises(ValueError, match="passwords"):
        PasswordTransformer(16, 2, 8)(torch.rand(2, 3, 8, 8), torch.zeros(2, 8))



def test_toy_fit_caches_state_and_a_refit_loads_it(tmp_path):
    fit = FITReversible(profile="toy", work_dir=tmp_path,
                        trainer_kwargs={"enable_progress_bar": False, "accelerator": "cpu"})
    fit.fit(ToyDataModule())
    state = fit.state_dict()
    assert all(torch.is_tensor(v) for v in state["transformer"].values())
    images, keys = _faces(4), _keys(4, 6)
    anonymised = fit.anonymize({"image": images}, keys)
    assert _psnr(fit.recover(_png(anonymised), keys), images) > 40
    again = FITReversible(profile="toy", work_dir=tmp_path)
    again.fit(ToyDataModule())  # the cached final state, no training
    assert torch.equal(again.anonymize({"image": images}, keys), anonymised)


def test_fast_dev_run_trains_one_batch_and_caches_nothing(tmp_path):
    fit = FITReversible(profile="toy", work_dir=tmp_path,
                        trainer_kwargs={"fast_dev_run": True, "accelerator": "cpu"})
    fit.fit(ToyDataModule())
    assert fit.anonymize({"image": _faces(2)}, _keys(2, 7)).shape == (2, 3, SIZE, SIZE)
    assert not list(tmp_path.rglob("*.pt"))


def test_registered_by_module_path():
    fit = load_method("baselines.fit.method:FITReversible", profile="toy")
    assert isinstance(fit, FITReversible) and fit.reversible and fit.key_bits == 16


def test_keyed_flip_variant_is_registered_and_trains_longer():
    variant = load_method("fit_keyed_flip", profile="quick")
    assert variant.cfg.keyed_flip and variant.cfg.epochs == 2 * FITReversible().cfg.epochs
    assert variant.build_networks()["transformer"].keyed_flip
