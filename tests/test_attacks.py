"""Attacks under a knowing attacker (docs/threat_model.md), on a small generated set: an
invertible colour transform is undone by the reversal attack and learnt by the parrot; a
whole-face mask stays near chance under every attack; the method sees no identity in the
order or indices of its test images; the identity bootstrap widens clustered intervals."""
from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest
import torch

from benchmark.attacks import ATTACKS, parse_attacks
from benchmark.blinding import BlindedMethod
from benchmark.bootstrap import bootstrap_mean_ci
from benchmark.profiles import (
    PROFILES, AttackConfig, NaturalnessConfig, ParrotConfig, ReversalConfig,
)
from benchmark.run import main
from benchmark.scores import declared, worst_case_names

TOY = PROFILES["toy"]
#: the toy profile with attackers (and a recogniser) trained long enough to mean something
ATTACK_TEST = replace(
    TOY, name="attack_test",
    evaluators=replace(TOY.evaluators, identity=replace(TOY.evaluators.identity, epochs=15)),
    attacks=AttackConfig(
        parrot=ParrotConfig(epochs=15, keys_per_image=1),
        reversal=ReversalConfig(encoder_depth=2, decoder_channels=(16, 8), epochs=25, lr=1e-2),
        naturalness=NaturalnessConfig(subsets=10, subset_size=16)))
METHODS = {"mask": "mask", "colour": "colour_method:ColourSwap"}


@pytest.fixture(scope="module")
def small_mema(tmp_path_factory):
    """24 identities x 3 images at 32 px: 7 test identities (chance 1/7)."""
    from data.synthetic import generate

    return generate(tmp_path_factory.mktemp("small") / "mema", identities=24,
                    images_per_identity=3, size=32, seed=0, progress=False)


@pytest.fixture(scope="module")
def records(small_mema, cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("lb")
    patch = pytest.MonkeyPatch()
    patch.setitem(PROFILES, "attack_test", ATTACK_TEST)
    patch.syspath_prepend(os.path.join(os.path.dirname(__file__), "data"))
    try:
        for method in METHODS.values():
            assert main(["--method", method, "--dataset", "mema", "--data-root", str(small_mema),
                         "--profile", "attack_test", "--output", str(out), "--quiet"]) == 0
    finally:
        patch.undo()
    runs = out / "runs" / "mema"
    return {key: json.loads((runs / f"{name.replace(':', '_')}.json").read_text())
            for key, name in METHODS.items()}


def _value(record, name):
    return record["scores"][name]["value"]


def test_colour_transform_is_undone_by_reversal_and_learnt_by_parrot(records):
    colour = records["colour"]
    # the naive recogniser is fooled: the pair protocol finds few own sources
    assert _value(colour, "reid_top1") < 0.5
    # reversal: the transform is learnt back and the faces recognised again
    assert _value(colour, "reversal_psnr") > 14.0  # the transformed images: about 10 dB
    assert _value(colour, "reversal_top1") >= 2 * _value(colour, "reid_top1")
    # parrot: trained on transformed faces, it links them about as well as the clean
    # recogniser links clean faces (the naive attack's clean reference)
    clean = colour["clean"]["reid_top1_identity"]["value"]
    assert _value(colour, "parrot_deid_top1_identity") >= clean - 0.15
    assert _value(colour, "reid_worst") >= max(_value(colour, n) for n in worst_case_names()
                                               if n in colour["scores"])


def test_whole_face_mask_stays_near_chance_under_every_attack(records):
    mask = records["mask"]
    for name in worst_case_names():
        if name in mask["scores"]:
            assert _value(mask, name) <= 3 * mask["chance"][name], name


def test_reid_worst_is_the_maximum_and_at_least_naive(records):
    for record in records.values():
        worst = _value(record, "reid_worst")
        assert worst >= _value(record, "reid_top1_identity")
        assert record["reid_worst_of"] in worst_case_names()
        assert worst == _value(record, record["reid_worst_of"])
        assert set(record["attacks"]) == {"naive", "parrot", "reversal", "linkage",
                                          "attribute_floor"}  # nothing reversible here


def test_every_score_is_declared_once(records):
    specs = declared()
    assert len(specs) == sum(len(f.scores) for f in __import__(
        "benchmark.scores", fromlist=["families"]).families())
    for record in records.values():
        assert set(record["scores"]) <= set(specs)


def test_blinded_method_sees_no_identity_in_order_or_index():
    """Rows ordered by person (identity = row // 8, as on MeMa-Synth): what the method sees
    must not reveal it."""
    n, per_person = 240, 8
    images = torch.arange(n, dtype=torch.float32).div(255 * 4).view(n, 1, 1, 1).expand(n, 3, 4, 4)
    identity = torch.arange(n) // per_person
    seen: list[tuple[int, int]] = []

    class Spy:
        name, key_bits, reversible = "spy", 0, False

        def anonymize(self, batch, keys):
            rows = (batch["image"][:, 0, 0, 0] * 255 * 4).round().long()
            seen.extend(zip(batch["index"].tolist(), rows.tolist()))
            return batch["image"]

    blinded = BlindedMethod(Spy(), batch_size=32, seed=0, device=torch.device("cpu"))
    out = blinded.anonymize(images, torch.zeros(n, 5, 2), None)
    assert torch.equal(out, images)  # outputs come back in the caller's order
    index = torch.tensor([i for i, _ in sorted(seen)])
    rows = torch.tensor([r for _, r in sorted(seen)])
    assert torch.equal(index, torch.arange(n))  # opaque: positions in the shuffled stream
    assert not torch.equal(rows, torch.arange(n))
    # neighbouring indices are rarely the same person (in row order 7 of 8 are)
    same = (identity[rows[1:]] == identity[rows[:-1]]).float().mean()
    assert same < 0.15
    # index and identity are uncorrelated
    ident = identity[rows].float()
    corr = torch.corrcoef(torch.stack([index.float(), ident]))[0, 1]
    assert abs(corr) < 0.3
    # a second call draws a fresh order
    seen.clear()
    blinded.anonymize(images, torch.zeros(n, 5, 2), None)
    assert [r for _, r in sorted(seen)] != rows.tolist()


def test_identity_bootstrap_widens_the_interval_of_clustered_data():
    gen = torch.Generator().manual_seed(0)
    people, per_person = 40, 8
    clusters = torch.arange(people).repeat_interleave(per_person)
    # a person's photos succeed or fail together
    clustered = (torch.rand(people, generator=gen) < 0.4).float().repeat_interleave(per_person)
    by_image = bootstrap_mean_ci(clustered, n_resamples=500, seed=1)
    by_person = bootstrap_mean_ci(clustered, n_resamples=500, seed=1, clusters=clusters)
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(by_person) > 2 * width(by_image)
    # independent data: resampling by person changes little
    independent = (torch.rand(people * per_person, generator=gen) < 0.4).float()
    ratio = width(bootstrap_mean_ci(independent, n_resamples=500, seed=1, clusters=clusters)) \
        / width(bootstrap_mean_ci(independent, n_resamples=500, seed=1))
    assert 0.6 < ratio < 1.6


def test_attack_selection_is_checked():
    default = [name for name, attack in ATTACKS.items() if attack.default]
    assert parse_attacks(None) == default == parse_attacks("all") and "dlib" not in default
    assert parse_attacks("parrot, naive") == ["naive", "parrot"]  # run order
    assert parse_attacks("all,dlib") == [*default, "dlib"]
    with pytest.raises(ValueError, match="unknown attack"):
        parse_attacks("naive,oracle")


def test_sweep_writes_one_row_per_value_and_a_curve(tiny_mema, cache, tmp_path):
    import pandas as pd

    out = tmp_path / "lb"
    assert main(["--method", "blur", "--sweep", "blur.sigma=1,8", "--attacks", "naive",
                 "--dataset", "mema", "--data-root", str(tiny_mema), "--profile", "toy",
                 "--output", str(out), "--quiet"]) == 0
    frame = pd.read_csv(out / "mema.csv").set_index("method")
    assert sorted(frame.index) == ["blur[sigma=1]", "blur[sigma=8]"]
    assert set(frame["family"]) == {"blur"}
    # a stronger blur removes more identity for the naive attacker
    assert frame.loc["blur[sigma=8]", "reid_top1"] <= frame.loc["blur[sigma=1]", "reid_top1"]
    assert (out / "mema_frontier.png").stat().st_size > 1000
    with pytest.raises(SystemExit):
        main(["--method", "blur", "--sweep", "pixelate.block=2"])


def test_dlib_recogniser_embeds_aligned_crops():
    from benchmark.attacks.dlib_recognizer import DlibRecognizer, dlib_model_files

    files = dlib_model_files()
    if files is None:
        pytest.skip("the [dlib] extra is not installed")
    faces = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    embedded = DlibRecognizer(files).embed(faces)
    assert embedded.shape == (2, 128)
    torch.testing.assert_close(embedded.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(DlibRecognizer(files).embed(faces[:1]), embedded[:1])


def test_storage_round_trip_png_is_8_bit_exact_and_jpeg_is_lossy():
    from benchmark.attacks.storage import through_file

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 16, 16), generator=gen).float() / 255
    torch.testing.assert_close(through_file(images, "png"), images)
    # a float image loses what 8 bits cannot hold
    shifted = (images + 0.3 / 255).clamp(0, 1)
    assert not torch.equal(through_file(shifted, "png"), shifted)
    jpeg = through_file(images, "jpeg", quality=90)
    assert 0 < (jpeg - images).abs().mean() < 0.25
