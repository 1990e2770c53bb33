"""PRO-Face S (``proface_*``): the Haar transform, the keyed pad, exact invertibility of the
flow, recovery through a PNG file, wrong keys, reproducibility and a toy fit in seconds."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from baselines.proface.method import ProFaceMask, ProFacePixelateKeepEyes, ProFaceS, obfuscate
from baselines.proface.torch_model import SecureFlow, haar, inverse_haar, key_pad
from benchmark.registry import load_method
from data.regions import CANONICAL_LANDMARKS

SIZE = 32


def _faces(n: int, seed: int = 0) -> torch.Tensor:
    """Smooth images inside [0.2, 0.8] with some fine texture (detail for the flow to hide)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.nn.functional.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(SIZE, SIZE),
                                          mode="bilinear")
    return 0.2 + 0.5 * low + 0.1 * torch.rand(n, 3, SIZE, SIZE, generator=g)


def _keys(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 2, (n, 64), generator=torch.Generator().manual_seed(seed)).float()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


def _batch(images: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"image": images, "landmarks": CANONICAL_LANDMARKS.expand(len(images), 5, 2)}


def _randomised(flow: SecureFlow, std: float = 0.05) -> SecureFlow:
    """A flow whose conditioners vary over the image, as trained ones do (theirs start flat),
    and that hides the details (gain near ``min_gain``), as a trained one does in the face."""
    torch.manual_seed(0)
    for net in (flow.low_net, *flow.detail_nets):
        torch.nn.init.normal_(net.body[-1].weight, std=std)
    for net in flow.detail_nets:
        torch.nn.init.constant_(net.body[-1].bias[:9], -6.0)  # the raw gains
    return flow


@pytest.fixture(scope="module")
def method() -> ProFaceS:
    proface = ProFaceS(profile="toy")
    flow = _randomised(proface.build_networks()["flow"])
    flow.set_energy_limit(_faces(16, seed=9), proface.cfg.lock_margin)
    proface.load_state_dict({"config": proface.config(), "flow": flow.state_dict()})
    return proface


def test_haar_is_orthonormal_and_inverts():
    images = torch.rand(2, 3, 16, 16)
    low, details = haar(images, 2)
    assert low.shape == (2, 3, 4, 4) and [d.shape[1:] for d in details] == [(9, 8, 8), (9, 4, 4)]
    energy = low.square().sum() + sum(d.square().sum() for d in details)
    assert torch.allclose(energy, images.square().sum(), rtol=1e-5)
    assert torch.allclose(inverse_haar(low, details), images, atol=1e-6)
    assert torch.allclose(low / 4, torch.nn.functional.avg_pool2d(images, 4), atol=1e-6)


def test_key_pad_is_reproducible_and_one_bit_gives_another_pad():
    keys = _keys(3, 0)
    pad = key_pad(keys, 1000)
    assert torch.equal(pad, key_pad(keys.clone(), 1000)) and pad.abs().max() <= 1
    flipped = keys.clone()
    flipped[:, 17] = 1 - flipped[:, 17]
    other = key_pad(flipped, 1000)
    correlation = torch.nn.functional.cosine_similarity(pad, other, dim=1)
    assert correlation.abs().max() < 0.15  # independent streams, not a perturbed one


def test_flow_inverts_exactly_on_a_toy_batch():
    flow = _randomised(SecureFlow(levels=2, width=8), std=0.2).double()
    images = _faces(4).double()
    flow.set_energy_limit(images, 0.5)  # the lock shifts these very faces: still invertible
    pad = key_pad(_keys(4, 1), flow.pad_size(images)).double()
    with torch.no_grad():
        protected, unpadded = flow(images, pad, with_unpadded=True)
        assert (protected - unpadded).abs().mean() > 1e-3  # the pad is in the output
        assert (flow.inverse(protected, pad) - images).abs().max() < 1e-10


def test_shapes_range_and_same_key_reproducible(method):
    images, keys = _faces(6), _keys(6, 2)
    out = method.anonymize(_batch(images), keys)
    assert out.shape == images.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, method.anonymize(_batch(images), keys.clone()))
    assert (method.anonymize(_batch(images), _keys(6, 3)) - out).abs().mean() > 1e-3


def test_recovery_through_a_png_file(method, tmp_path):
    images, keys = _faces(4), _keys(4, 4)
    protected = method.anonymize(_batch(images), keys)
    stored = []
    for i, image in enumerate(protected):
        path = tmp_path / f"{i}.png"
        Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()).save(path)
        stored.append(torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1) / 255)
    recovered = method.recover(torch.stack(stored), keys)
    assert _psnr(recovered, images) > 30 > _psnr(protected, images) + 5


def test_wrong_key_does_not_recover(method):
    images, keys = _faces(6), _keys(6, 5)
    protected = method.anonymize(_batch(images), keys)
    wrong = keys.clone()
    wrong[:, 40] = 1 - wrong[:, 40]  # one bit off
    assert _psnr(method.recover(protected, keys), images) > 40
    recovered = method.recover(protected, wrong)
    assert _psnr(recovered, images) < 20
    assert recovered.mean() < 0.05  # the energy lock blackened it: not even the low band is left


def test_keys_must_have_the_method_length(method):
    with pytest.raises(ValueError, match="keys must be"):
        method.anonymize(_batch(_faces(2)), torch.zeros(2, 16))


def test_obfuscation_is_the_classic_baseline_and_unknown_ones_are_refused():
    images = (_faces(2) * 255).round().byte()
    data = {"image": images, "landmarks": CANONICAL_LANDMARKS.expand(2, 5, 2)}
    masked = obfuscate(data, "mask")
    assert (masked == 128).float().mean() > 0.2 and (masked == images).float().mean() > 0.2
    with pytest.raises(ValueError, match="unknown obfuscation"):
        obfuscate(data, "swirl")
    assert ProFacePixelateKeepEyes(profile="toy").cfg.obfuscation == "pixelate_keep_eyes"
    assert ProFaceMask(profile="toy", obfuscation="blur").cfg.obfuscation == "blur"


class _ToyDataModule:
    """Four 'identities', two images each, at 32 px, with canonical landmarks."""

    classes, signs = ["healthy"], []

    def setup(self, stage=None):
        self.images = _faces(8, seed=6)

    def train_dataloader(self):
        return [_batch(self.images[i:i + 4]) | {"identity": torch.arange(4)} for i in (0, 4)]


def test_toy_fit_caches_state_and_a_refit_loads_it(tmp_path):
    kwargs = {"profile": "toy", "work_dir": tmp_path,
              "trainer_kwargs": {"enable_progress_bar": False, "accelerator": "cpu"}}
    proface = ProFaceS(**kwargs)
    proface.fit(_ToyDataModule())
    images, keys = _faces(4), _keys(4, 7)
    protected = proface.anonymize(_batch(images), keys)
    assert _psnr(proface.recover(protected, keys), images) > 40
    again = ProFaceS(**kwargs)
    again.fit(_ToyDataModule())  # the cached final state, no training
    assert torch.equal(again.anonymize(_batch(images), keys), protected)


def test_fast_dev_run_trains_one_batch_and_caches_nothing(tmp_path):
    proface = ProFaceS(profile="toy", work_dir=tmp_path,
                       trainer_kwargs={"fast_dev_run": True, "accelerator": "cpu"})
    proface.fit(_ToyDataModule())
    assert proface.anonymize(_batch(_faces(2)), _keys(2, 8)).shape == (2, 3, SIZE, SIZE)
    assert not list(tmp_path.rglob("*.pt"))


def test_registered_by_module_path():
    proface = load_method("baselines.proface.method:ProFaceS", profile="toy")
    assert isinstance(proface, ProFaceS) and proface.reversible and proface.key_bits == 64
