"""MedSem-DeID: the sealed recovery payload (keys, PNG, wrong key, JPEG), the generator, frozen
Enc_med, caching, signs surviving on a toy set, a one-batch train."""
from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from data.regions import CANONICAL_LANDMARKS
from medsem_deid import payload
from medsem_deid.config import make_config
from benchmark.api.inpainting import Critic, deid_mask
from medsem_deid.lightning_model import MedSemGANModule
from medsem_deid.method import MedSemDeID, MedSemDeIDNoPrior, from_uint8, to_uint8
from medsem_deid.torch_model import (IdentityEmbedder, MedicalSemanticsEncoder, MedSemGenerator,
                                      edge_taper)

TINY = dict(batch_size=8, width=8, disc_width=8, code_dim=8, z_dim=8, med_width=8,
            med_channels=8, cond_channels=4, id_width=8, id_dim=8, med_crop_epochs=1,
            id_epochs=1, epochs=1)
SIZE = 32
#: the toy signs: a bar of the class's colour channel across both eyes (periocular region)
BAR_ROWS, BAR_COLS = slice(11, 15), slice(8, 24)


def _toy_faces(n: int, identities: int, seed: int) -> dict[str, torch.Tensor]:
    """Smooth 'faces' (identity = base colour and a shading gradient) with a disease bar
    across the eyes whose colour channel is the class."""
    g = torch.Generator().manual_seed(seed)
    identity = torch.arange(n) % identities + seed
    label = torch.randint(0, 3, (n,), generator=g)
    colour = (0.2 + 0.5 * torch.rand(identities, 3, 1, 1, generator=g))[identity - seed]
    ramp = torch.linspace(0, 0.2, SIZE).view(1, 1, SIZE, 1)
    image = (colour + ramp).expand(n, 3, SIZE, SIZE).clone()
    for i, c in enumerate(label.tolist()):
        image[i, :, BAR_ROWS, BAR_COLS] = 0.1
        image[i, c, BAR_ROWS, BAR_COLS] = 0.95
    return {"image": image, "label": label, "identity": identity,
            "signs": torch.nn.functional.one_hot(label, 3)[:, 1:].float(),
            "landmarks": CANONICAL_LANDMARKS.expand(n, 5, 2).clone(), "index": torch.arange(n)}


class _FakeSplit(torch.utils.data.Dataset):
    def __init__(self, n: int, identities: int, seed: int):
        self.data = _toy_faces(n, identities, seed)

    def __len__(self):
        return len(self.data["image"])

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.data.items()}


class _FakeDataModule:
    classes = ["healthy", "ptosis", "red_eye"]
    signs = ["ptosis_both", "redness_both"]

    def __init__(self, n_train: int = 24):
        self.n_train = n_train

    def setup(self, stage=None):
        self.splits = {"train": _FakeSplit(self.n_train, 6, 0), "val": _FakeSplit(8, 2, 100)}

    def train_dataloader(self):
        return DataLoader(self.splits["train"], batch_size=8, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.splits["val"], batch_size=8)


def _keys(n: int, seed: int, bits: int = 256) -> torch.Tensor:
    return torch.randint(0, 2, (n, bits), generator=torch.Generator().manual_seed(seed)).float()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(float) - b) ** 2)))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> MedSemDeID:
    method = MedSemDeID(work_dir=tmp_path_factory.mktemp("medsem"),
                        trainer_kwargs={"enable_progress_bar": False}, **TINY)
    method.fit(_FakeDataModule())
    return method


# -- the payload ---------------------------------------------------------------------------------
def test_payload_survives_an_8bit_png_file_and_only_the_right_key_opens_it(tmp_path):
    original = to_uint8(_toy_faces(1, 1, 3)["image"] * 0.8 + 0.1 * torch.rand(1, 3, SIZE, SIZE))
    shown = np.random.default_rng(0).integers(0, 256, original.shape, dtype=np.uint8)
    key, wrong = payload.key_bytes(_keys(2, 1).numpy())
    stego = payload.embed(shown, [payload.seal(original[0], key, 3)], 3)
    assert np.abs(stego.astype(int) - shown).max() <= 7  # only the 3 low bits move
    Image.fromarray(stego[0]).save(tmp_path / "deid.png")
    stored = np.asarray(Image.open(tmp_path / "deid.png"))[None]
    sealed = payload.extract(stored, 3)[0]
    assert len(sealed) == payload.capacity(SIZE, SIZE, 3)
    assert _psnr(payload.unseal(sealed, key, (SIZE, SIZE), 3), original[0]) > 30
    assert payload.unseal(sealed, wrong, (SIZE, SIZE), 3) is None
    Image.fromarray(stego[0]).save(tmp_path / "deid.jpg", quality=90)  # lossy: the seal breaks
    jpeg = np.asarray(Image.open(tmp_path / "deid.jpg"))[None]
    assert payload.unseal(payload.extract(jpeg, 3)[0], key, (SIZE, SIZE), 3) is None


def test_keys_are_validated_and_the_face_code_follows_the_key():
    with pytest.raises(ValueError, match="multiple of 8"):
        payload.key_bytes(np.zeros((2, 12)))
    with pytest.raises(ValueError, match="0 and 1"):
        payload.key_bytes(np.full((2, 16), 0.5))
    keys = _keys(512, 0).numpy()
    codes = payload.face_noise(keys, 16)
    assert np.array_equal(codes, payload.face_noise(keys, 16))
    assert abs(codes.mean()) < 0.05 and abs(codes.std() - 1) < 0.05
    assert np.abs(codes[0] - codes[1]).mean() > 0.3


# -- the generator ------------------------------------------------------------------------------
@pytest.mark.parametrize("prior", [True, False])
@pytest.mark.parametrize("size", [32, 64])
def test_generator_shapes_and_the_condition_lies_on_the_eye_band(prior, size):
    enc_med = MedicalSemanticsEncoder(3, 2, width=8, channels=8) if prior else None
    net = MedSemGenerator(enc_med, z_dim=8, code_dim=8, width=8, cond_channels=4).eval()
    x, marks = torch.rand(2, 3, size, size), CANONICAL_LANDMARKS.expand(2, 5, 2)
    mask = deid_mask(marks, (size, size), keep_eyes=False)
    with torch.no_grad():
        y = net(x, marks, mask, torch.randn(2, 8))
    assert y.shape == x.shape and 0 <= float(y.min()) and float(y.max()) <= 1
    assert net.unet.stem[0].in_channels == 3 + 1 + (4 if prior else 0)
    if prior:  # Enc_med's view is laid on the eye band and nowhere else
        condition = net.condition(x, marks, net.mapping(torch.randn(2, 8)))
        assert condition.shape == (2, 4, size, size)
        assert condition[..., -2:, :].abs().max() == 0 and condition.abs().max() > 0


def test_condition_levels_and_the_key_modulation():
    torch.manual_seed(0)
    enc_med = MedicalSemanticsEncoder(3, 2, width=8, channels=8)
    coarse = MedSemGenerator(enc_med, z_dim=8, code_dim=8, width=8, cond_channels=4,
                             cond_levels=1)
    assert coarse.project.in_channels == 8  # the stride-8 map alone
    net = MedSemGenerator(enc_med, z_dim=8, code_dim=8, width=8, cond_channels=4,
                          key_film=True).eval()
    x, marks = torch.rand(1, 3, 32, 32).expand(2, 3, 32, 32), CANONICAL_LANDMARKS.expand(2, 5, 2)
    codes = net.mapping(torch.randn(2, 8))
    same = net.condition(x, marks, codes)
    assert torch.equal(same[0], same[1])  # zero-initialised: the identity modulation
    torch.nn.init.normal_(net.film.weight)
    moved = net.condition(x, marks, codes)
    assert (moved[0] - moved[1]).abs().max() > 1e-3  # two keys, two eye regions


def test_the_condition_fades_towards_the_eye_bands_edges():
    window = edge_taper((16, 32), 0.25)
    assert window[8, 16] == 1 and window[0, 0] < 0.01 and torch.equal(window, window.flip(1))
    torch.manual_seed(0)
    enc_med = MedicalSemanticsEncoder(3, 2, width=8, channels=8)
    hard, soft = (MedSemGenerator(enc_med, z_dim=8, code_dim=8, width=8, cond_channels=4,
                                  cond_taper=taper) for taper in (0.0, 0.25))
    soft.project.load_state_dict(hard.project.state_dict())
    x, marks = torch.rand(1, 3, 64, 64), CANONICAL_LANDMARKS.expand(1, 5, 2)
    code = hard.mapping(torch.randn(1, 8))
    edge_hard, edge_soft = (net.condition(x, marks, code).abs().sum(1) for net in (hard, soft))
    assert torch.all(edge_soft <= edge_hard + 1e-6)
    rows = (edge_hard[0] > 0).any(1).nonzero()[:, 0]
    top = int(rows[1])  # the band's second row: little of the condition, its centre all of it
    assert edge_soft[0, top].sum() < 0.5 * edge_hard[0, top].sum()
    assert torch.allclose(edge_soft[0, 26, 32], edge_hard[0, 26, 32])
    with pytest.raises(ValueError, match="cond_taper"):
        MedSemGenerator(enc_med, z_dim=8, code_dim=8, width=8, cond_channels=4, cond_taper=0.6)


@pytest.mark.parametrize("w_parrot", [0.0, 1.0])
def test_enc_med_stays_frozen_while_the_generator_trains(w_parrot):
    torch.manual_seed(0)
    enc_med = MedicalSemanticsEncoder(3, 2, width=8, channels=8)
    generator = MedSemGenerator(enc_med, z_dim=8, code_dim=8, width=8, cond_channels=4)
    id_net = IdentityEmbedder(8, 8)
    module = MedSemGANModule(generator, Critic(4, 8), id_net,
                             make_config(**TINY, w_parrot=w_parrot), torch.arange(4))
    assert (module.parrot is not None) == bool(w_parrot)
    parrot_before = ({k: v.clone() for k, v in module.parrot.state_dict().items()}
                     if w_parrot else {})
    enc_before = {k: v.clone() for k, v in enc_med.state_dict().items()}
    unet_before = {k: v.clone() for k, v in generator.unet.state_dict().items()}
    split = _FakeSplit(8, 4, 0)
    L.Trainer(fast_dev_run=True, enable_progress_bar=False, logger=False,
              enable_model_summary=False).fit(module, DataLoader(split, batch_size=8))
    assert not enc_med.training and not any(p.requires_grad for p in enc_med.parameters())
    assert all(torch.equal(enc_before[k], v) for k, v in enc_med.state_dict().items())
    assert not id_net.training and not any(p.requires_grad for p in id_net.parameters())
    assert any(not torch.equal(unet_before[k], v) for k, v in generator.unet.state_dict().items())
    if w_parrot:  # the parrot adversary learns in the critic's step
        assert any(not torch.equal(parrot_before[k], v)
                   for k, v in module.parrot.state_dict().items())


def test_the_medical_term_scores_a_random_view_of_the_eye_band():
    """With ``med_view_share`` the term also scores a shifted, blurred, noisy crop: it then
    varies with the draw (share 0 is the exact crop, the same for every draw)."""
    enc_med = MedicalSemanticsEncoder(3, 2, width=8, channels=8)
    batch = next(iter(DataLoader(_FakeSplit(8, 4, 0), batch_size=8)))

    def medical(share, seed):
        torch.manual_seed(0)
        generator = MedSemGenerator(enc_med, z_dim=8, code_dim=8, width=8, cond_channels=4)
        module = MedSemGANModule(generator, Critic(4, 8), IdentityEmbedder(8, 8),
                                 make_config(**TINY, w_parrot=0.0, med_view_share=share),
                                 torch.arange(4))
        fake = batch["image"].flip(-1)
        torch.manual_seed(seed)
        return module.extra_terms(batch, fake, module.train_codes(batch))["medical"][1]

    assert torch.equal(medical(0.0, 1), medical(0.0, 2))
    assert not torch.equal(medical(1.0, 1), medical(1.0, 2))
    assert not torch.equal(medical(1.0, 1), medical(0.0, 1))


# -- the method ---------------------------------------------------------------------------------
def test_anonymize_is_8bit_reproducible_per_key_and_checks_key_length(fitted):
    x, keys = _toy_faces(4, 4, 7)["image"], _keys(4, 3)
    y = fitted.anonymize({"image": x}, keys)
    assert y.shape == x.shape and torch.equal(y, from_uint8(to_uint8(y)))
    assert torch.equal(y, fitted.anonymize({"image": x}, keys))  # same key, same face
    assert (y - fitted.anonymize({"image": x}, _keys(4, 4))).abs().mean() > 1e-3
    with pytest.raises(ValueError, match="keys must be"):
        fitted.anonymize({"image": x}, _keys(4, 3, bits=32))
    assert MedSemDeID.key_bits >= 128 and fitted.key_bits == 256


def test_recovery_through_a_png_file_and_a_wrong_key_recovers_no_one(fitted, tmp_path):
    x, keys = _toy_faces(3, 3, 9)["image"], _keys(3, 5)
    y = fitted.anonymize({"image": x}, keys)
    for i, image in enumerate(to_uint8(y)):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    stored = from_uint8(np.stack([np.asarray(Image.open(tmp_path / f"{i}.png")) for i in range(3)]))
    recovered = fitted.recover(stored, keys)
    assert _psnr(to_uint8(recovered), to_uint8(x)) > 35
    wrong = fitted.recover(stored, _keys(3, 6))
    neutral = to_uint8(fitted.mean_face[None])[0]
    assert all(np.array_equal(face, neutral) for face in to_uint8(wrong))


def test_state_dict_loads_with_weights_only_and_a_second_fit_is_skipped(fitted, tmp_path,
                                                                        monkeypatch):
    torch.save(fitted.state_dict(), tmp_path / "state.pt")
    restored = MedSemDeID(**TINY)
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    x, keys = _toy_faces(2, 2, 11)["image"], _keys(2, 0)
    assert torch.equal(restored.anonymize({"image": x}, keys), fitted.anonymize({"image": x}, keys))

    def no_training(*args, **kwargs):
        raise AssertionError("a finished fit in the same work_dir must be reused")

    monkeypatch.setattr(MedSemDeID, "prepare", no_training)
    again = MedSemDeID(work_dir=fitted.work_dir, **TINY)
    again.fit(_FakeDataModule())
    assert torch.equal(again.anonymize({"image": x}, keys), fitted.anonymize({"image": x}, keys))
    with pytest.raises(ValueError, match="different config"):
        MedSemDeID(**{**TINY, "width": 16}).load_state_dict(fitted.state_dict())


def test_periocular_signs_survive_on_a_toy_set(tmp_path):
    """A nearest-centroid classifier of the bar's colour, fitted on clean toy faces, agrees on
    the generated faces far above chance (1/3)."""
    # the toy identity network and discriminator learn little in seconds: the medical path is
    # what this test is about
    options = {**TINY, "med_crop_epochs": 4, "id_epochs": 1, "epochs": 10, "lr": 3e-3,
               "w_identity": 0.0, "w_diversity": 0.0, "w_medical": 2.0}
    method = MedSemDeID(work_dir=tmp_path, trainer_kwargs={"enable_progress_bar": False},
                        **options)
    method.fit(_FakeDataModule(n_train=64))
    test = _toy_faces(48, 12, 200)

    def bar_class(images):
        return images[:, :, BAR_ROWS, BAR_COLS].mean((2, 3)).argmax(1)

    deid = method.anonymize(test, _keys(48, 1))
    assert (bar_class(test["image"]) == test["label"]).all()
    agreement = (bar_class(deid) == test["label"]).float().mean()
    assert agreement > 0.6, f"signs survived on {agreement:.0%} of the toy faces"


def test_fast_dev_run_trains_one_batch_and_no_prior_has_no_enc_med():
    method = MedSemDeIDNoPrior(trainer_kwargs={"fast_dev_run": True, "enable_progress_bar": False},
                               **TINY)
    method.fit(_FakeDataModule())
    assert method.generator.enc_med is None and not hasattr(method.generator, "project")
    assert method.config()["medical_prior"] is False
    y = method.anonymize({"image": torch.rand(2, 3, SIZE, SIZE)}, _keys(2, 0))
    assert y.shape == (2, 3, SIZE, SIZE)


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
    assert MedSemDeID.reversible


def test_occlusion_keeps_the_eyes_and_crop_follows_the_landmarks():
    from data.regions import face_mask, periocular_crop, periocular_mask
    from benchmark.api.nn import occlude

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
