"""MedSem-DeID: shapes, key handling, frozen Enc_med, caching, a one-batch train."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from data.regions import CANONICAL_LANDMARKS
from medsem_deid.config import make_config
from medsem_deid.lightning_model import DeIdModule
from medsem_deid.method import MedSemDeID, MedSemDeIDNoPrior
from medsem_deid.torch_model import IdentityEmbedder, MedicalSemanticsEncoder, MedSemDeIDNet

TINY = dict(batch_size=8, width=8, key_channels=8, med_width=8, med_channels=8, id_width=8,
            id_dim=8, med_epochs=1, id_epochs=1, deid_epochs=1)


class _FakeSplit(torch.utils.data.Dataset):
    """A few flat-colour 'faces' (colour = identity) with a disease bar (class) near the eyes."""

    def __init__(self, n: int, identities: int, offset: int, size: int = 16):
        g = torch.Generator().manual_seed(offset)
        self.identity = torch.arange(n) % identities + offset
        self.label = torch.randint(0, 3, (n,), generator=g)
        colour = torch.rand(identities, 3, 1, 1, generator=g)[self.identity - offset]
        self.image = colour.expand(n, 3, size, size).clone()
        for i, label in enumerate(self.label.tolist()):
            self.image[i, label, 5:7, 3:13] = 1.0

    def __len__(self):
        return len(self.image)

    def __getitem__(self, i):
        return {"image": self.image[i], "label": self.label[i],
                "signs": torch.nn.functional.one_hot(self.label[i], 3)[1:].float(),
                "identity": self.identity[i], "landmarks": CANONICAL_LANDMARKS.clone(),
                "index": torch.tensor(i)}


class _FakeDataModule:
    classes = ["healthy", "ptosis", "red_eye"]
    signs = ["ptosis_both", "redness_both"]

    def setup(self, stage=None):
        self.splits = {"train": _FakeSplit(24, 6, 0), "val": _FakeSplit(8, 2, 100)}

    def train_dataloader(self):
        return DataLoader(self.splits["train"], batch_size=8, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.splits["val"], batch_size=8)


def _net(couplings: int = 2, prior: bool = True) -> MedSemDeIDNet:
    torch.manual_seed(0)
    enc_med = MedicalSemanticsEncoder(3, 2, width=8, channels=8) if prior else None
    net = MedSemDeIDNet(enc_med, width=8, key_channels=8, med_channels=8,
                        num_couplings=couplings)
    for coupling in net.couplings:  # leave the identity initialisation: keys must matter
        torch.nn.init.normal_(coupling.out.weight, std=0.02)
    net.freeze_prior()
    return net.eval()


def _keys(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 2, (n, 32), generator=torch.Generator().manual_seed(seed)).float()


@pytest.mark.parametrize("size", [16, 32])
def test_encrypt_decrypt_shapes_and_range(size):
    net, x = _net(), torch.rand(3, 3, size, size)
    with torch.no_grad():
        y = net.encrypt(x, _keys(3, 0))
        r = net.decrypt(y, _keys(3, 0))
    assert y.shape == r.shape == x.shape
    assert 0 <= float(y.min()) and float(y.max()) <= 1
    with pytest.raises(ValueError, match="keys"):
        net.encrypt(x, _keys(2, 0))


@pytest.mark.parametrize("couplings", [2, 4])
def test_keys_reproducible_distinct_and_only_the_right_one_recovers(couplings):
    net, x = _net(couplings), torch.rand(4, 3, 32, 32) * 0.9 + 0.05
    right, wrong = _keys(4, 1), _keys(4, 2)
    with torch.no_grad():
        y = net.encrypt(x, right)
        assert torch.equal(y, net.encrypt(x, right))  # same key, same face
        assert (y - net.encrypt(x, wrong)).abs().mean() > 1e-3  # another key, another face
        assert (y - x).abs().mean() > 1e-3
        recovered, scrambled = net.decrypt(y, right), net.decrypt(y, wrong)
    assert (recovered - x).abs().max() < 2e-3
    assert (scrambled - x).abs().mean() > 10 * (recovered - x).abs().mean()


def test_enc_med_frozen_during_deid_training():
    cfg = make_config(**TINY)
    net = _net()
    net.train()
    critic = MedicalSemanticsEncoder(3, 2, width=8, channels=8)  # the periocular critic
    module = DeIdModule(net, IdentityEmbedder(8, 8), cfg, critic)
    module.log = module.log_dict = lambda *a, **k: None
    module.train()
    before = {k: v.clone() for k, v in net.enc_med.state_dict().items()}
    opt = module.configure_optimizers()[0][0]
    batch = {"image": torch.rand(4, 3, 16, 16), "landmarks": CANONICAL_LANDMARKS.expand(4, 5, 2)}
    loss = module.training_step(batch, 0)
    loss.backward()
    opt.step()
    assert not net.enc_med.training and not any(p.requires_grad for p in net.enc_med.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.enc_med.state_dict().items())
    assert not critic.training and not any(p.requires_grad for p in critic.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.couplings.parameters())


def test_fit_caches_state_and_second_fit_skips(tmp_path, monkeypatch):
    dm = _FakeDataModule()
    method = MedSemDeID(work_dir=tmp_path, trainer_kwargs={"enable_progress_bar": False}, **TINY)
    method.fit(dm)
    x, keys = torch.rand(5, 3, 16, 16), _keys(5, 3)
    y = method.anonymize({"image": x}, keys)
    assert y.shape == x.shape and (method.recover(y, keys) - x.clamp(1e-3, 1 - 1e-3)).abs().max() < 1e-2

    restored = MedSemDeID(**TINY)
    restored.load_state_dict(method.state_dict())
    assert torch.equal(restored.anonymize({"image": x}, keys), y)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished fit in the same work_dir must be reused")

    monkeypatch.setattr(MedSemDeID, "_fit_deid", no_training)
    again = MedSemDeID(work_dir=tmp_path, **TINY)
    again.fit(dm)
    assert torch.equal(again.anonymize({"image": x}, keys), y)
    with pytest.raises(ValueError, match="different config"):
        MedSemDeID(**{**TINY, "width": 16}).load_state_dict(method.state_dict())


def test_fast_dev_run_trains_one_batch_and_no_prior_has_no_enc_med():
    method = MedSemDeIDNoPrior(trainer_kwargs={"fast_dev_run": True, "enable_progress_bar": False},
                               **TINY)
    method.fit(_FakeDataModule())
    assert method.net.enc_med is None
    assert method.config()["medical_prior"] is False
    y = method.anonymize({"image": torch.rand(2, 3, 16, 16)}, _keys(2, 0))
    assert y.shape == (2, 3, 16, 16)


def test_fast_dev_run_on_generated_mema(request):
    try:
        datamodule = request.getfixturevalue("tiny_mema")
    except pytest.FixtureLookupError:
        pytest.skip("the data package's tiny_mema fixture is not available")
    if not hasattr(datamodule, "train_dataloader"):  # the fixture may hand out a root folder
        from data import MeMaDataModule

        datamodule = MeMaDataModule(datamodule, image_size=32, batch_size=8)
    method = MedSemDeID(trainer_kwargs={"fast_dev_run": True, "enable_progress_bar": False},
                        **TINY)
    method.fit(datamodule)
    batch = next(iter(datamodule.val_dataloader()))
    keys = _keys(len(batch["image"]), 0)
    y = method.anonymize(batch, keys)
    assert y.shape == batch["image"].shape
    assert torch.isfinite(method.recover(y, keys)).all()


def test_entry_points_name_both_methods():
    from importlib.metadata import entry_points

    found = {ep.name: ep.value for ep in entry_points(group="mema_bench.methods")}
    assert found["medsem_deid"] == "medsem_deid.method:MedSemDeID"
    assert found["medsem_deid_noprior"] == "medsem_deid.method:MedSemDeIDNoPrior"
    assert MedSemDeID.reversible and MedSemDeID.key_bits == 32


def test_occlusion_keeps_the_eyes_and_crop_follows_the_landmarks():
    from data.regions import face_mask, periocular_mask
    from data.regions import periocular_crop
    from medsem_deid.losses import occlude

    torch.manual_seed(0)
    images, marks = torch.rand(6, 3, 32, 32), CANONICAL_LANDMARKS.expand(6, 5, 2)
    assert torch.equal(occlude(images, marks, 0.0, 0.0), images)
    hidden = occlude(images, marks, 1.0, 0.0)
    eyes = periocular_mask(marks, (32, 32)).bool().expand_as(images)
    outside_face = (1 - face_mask(marks, (32, 32))).bool().expand_as(images)
    assert torch.equal(hidden[eyes], images[eyes]) and torch.equal(hidden[outside_face], images[outside_face])
    assert not torch.equal(hidden, images)
    # the crop is the eye band: a bright bar between the eyes shows in it, one at the chin not
    bar = torch.zeros(1, 3, 32, 32)
    eye_y = int(CANONICAL_LANDMARKS[0, 1] * 32)
    bar[..., eye_y, :] = 1.0
    chin = torch.zeros(1, 3, 32, 32)
    chin[..., 30, :] = 1.0
    assert periocular_crop(bar, marks[:1], (8, 16)).amax() > 0.2
    assert periocular_crop(chin, marks[:1], (8, 16)).amax() < 1e-6
