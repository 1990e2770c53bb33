"""The MeMa builder (``data.builder``, ``python -m data.build``): a toy build writes a valid
layout, and the filters reject a planted copy of a source face and an implausible sample."""
from __future__ import annotations

import json
import runpy
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from data import MeMaDataModule
from data.build import main as build_main
from data.builder import REASONS, build, get_profile
from data.builder.build import verdicts
from data.builder.conditions import ConditionSpace, sampling_plan
from data.builder.autoencoder import LatentAutoencoder
from data.builder.diffusion import identity_latents, periocular_weight
from data.builder.profiles import PROFILES, BuildProfile
from data.builder.filters import fit_judges
from data.layout import read_metadata

TOY = get_profile("toy")
QUIET = {"accelerator": "cpu", "enable_progress_bar": False, "enable_model_summary": False}


@pytest.fixture(scope="module")
def built(tiny_mema, tmp_path_factory):
    root = tmp_path_factory.mktemp("built")
    cache = root / "cache"
    record = build(tiny_mema, root / "set", TOY, trainer_kwargs=QUIET, verbose=False, cache=cache)
    return root / "set", record, cache


def test_toy_build_writes_a_valid_layout_that_loads_without_warnings(built):
    out, record, _ = built
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dm = MeMaDataModule(out, image_size=16, batch_size=8)
        dm.setup()
    table = pd.read_csv(out / "metadata.csv", keep_default_na=False)
    assert len(table) == record["kept"] > 0
    assert record["kept"] + sum(record["rejected"].values()) == record["generated"]
    assert set(record["rejected"]) == set(REASONS)
    for column in ("plausibility", "memorisation_id_similarity", "memorisation_pixel_rmse", "mask_source"):
        assert column in table.columns
    assert (table["memorisation_id_similarity"] < record["thresholds"]["id_similarity"]).all()
    assert (table["memorisation_pixel_rmse"] > record["thresholds"]["pixel_rmse"]).all()
    assert (table.groupby("identity").size() >= TOY.filters.min_images_per_identity).all()
    assert (table.loc[table["mask"] != "", "mask_source"] == "pseudo:joint-diffusion").all()
    provenance = json.loads((out / "build.json").read_text())
    assert len(provenance["generator_sha256"]) == 64 and provenance["source_fingerprint"]
    assert len(provenance["autoencoder_sha256"]) == 64 and provenance["autoencoder_psnr_db"]["val"] > 0
    assert (out / "preview.png").stat().st_size > 0 and (out / "rejected.csv").is_file()
    # classes and signs are the source's
    assert read_metadata(out)[1] == read_metadata(provenance["source"])[1]


def test_an_interrupted_training_resumes_and_the_cli_refuses_an_existing_output(built, tiny_mema, tmp_path, capsys):
    out, record, cache = built
    # without the finished weights, training resumes from Lightning's last.ckpt to the same ones
    (weights,) = cache.glob("*/generator-*/generator.safetensors")
    weights.unlink()
    resumed = build(tiny_mema, tmp_path / "resumed", TOY, trainer_kwargs=QUIET, verbose=False, cache=cache)
    assert resumed["generator_sha256"] == record["generator_sha256"]
    assert weights.is_file()
    assert build_main([str(tiny_mema), "--out", str(out), "--profile", "toy", "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert build_main([str(tiny_mema), "--out", str(tmp_path / "x"), "--per-condition", "0"]) == 2


def test_filters_reject_a_planted_copy_and_an_implausible_sample(built, tiny_mema):
    (directory,) = built[2].glob("*/judges-*")  # trained by the toy build, loaded here
    judges = fit_judges(tiny_mema, 16, TOY.filters, directory)
    judges = replace(judges, plausibility_threshold=0.5)
    table, names = read_metadata(tiny_mema)
    copy = judges.source_images[:2]  # two photos of the training split, planted unchanged
    train = table[table["split"] == "train"]
    verdict = judges.judge(copy, list(train["label"][:2]), list(train["signs"][:2]))
    assert verdict["memorised"].all()
    assert (verdict["memorisation_pixel_rmse"] == 0).all()
    # an implausible sample: a face asked to show the condition the classifier finds least likely
    face = judges.source_images[2:3] * 0 + 0.5
    with torch.no_grad():
        least = int(judges.classifier(face)[0, :len(names.classes)].argmin())
    verdict = judges.judge(face, [names.classes[least]], [""])
    assert verdict["implausible"].all() and verdict["plausibility"][0] < 0.5


def test_verdicts_reject_a_memorised_persons_other_photos_and_drop_lonely_photos():
    judged = pd.DataFrame(dict(memorised=[True, False, False, False, False, False],
                               implausible=[False, False, False, True, False, False]))
    person = np.array([0, 0, 1, 1, 2, 2])
    # person 0: one copy rejects both photos; person 1: one photo left, too few; person 2 kept
    assert list(verdicts(judged, person, 2)) == [
        "memorised", "memorised_person", "too_few_images", "implausible", "", ""]


def test_sampling_plan_balances_conditions_and_draws_age_and_sex_from_the_source(tiny_mema):
    table, names = read_metadata(tiny_mema)
    train = table[table["split"] == "train"]
    space = ConditionSpace.of(names)
    plan = sampling_plan(train, space, per_condition=4, images_per_identity=3, rng=np.random.default_rng(0))
    counts = plan["label"].value_counts()
    assert set(counts.index) == set(train["label"]) and (counts == 4).all()
    assert set(zip(plan["age"], plan["sex"])) <= set(zip(train["age"], train["sex"]))
    assert (plan.groupby("person")[["age", "sex"]].nunique() == 1).all().all()
    for label, signs in zip(plan["label"], plan["signs"]):  # signs seen with that label in the source
        assert signs in set(train.loc[train["label"] == label, "signs"])
    vectors = space.encode(plan["label"], plan["signs"], plan["age"], plan["sex"])
    assert vectors.shape == (len(plan), space.dim) and (vectors[:, -1] == 1).all()


def test_photos_of_one_generated_person_share_their_starting_latent():
    latents = identity_latents(torch.tensor([0, 0, 1]), (3, 8, 8), jitter=0.15, seed=0).flatten(1)
    same = torch.nn.functional.cosine_similarity(latents[0], latents[1], dim=0)
    other = torch.nn.functional.cosine_similarity(latents[0], latents[2], dim=0)
    assert same > 0.7 and abs(other) < 0.3


def test_the_autoencoder_maps_images_to_standardised_latents_and_back():
    config = TOY.autoencoder
    autoencoder = LatentAutoencoder(config, channels=4).eval()
    images = torch.rand(6, 4, config.image_size, config.image_size) * 2 - 1
    autoencoder.standardise(images)
    latents = autoencoder.encode(images)
    side = config.latent_size
    assert latents.shape == (6, config.latent_channels, side, side) == (6, config.latent_channels,
                                                                         TOY.generator.image_size, side)
    # standardised on these images: per channel zero mean, unit variance
    assert latents.mean((0, 2, 3)).abs().max() < 1e-4
    assert (latents.std((0, 2, 3)) - 1).abs().max() < 1e-3
    decoded = autoencoder.decode(latents)
    assert decoded.shape == images.shape and decoded.min() >= -1 and decoded.max() <= 1


def test_a_profile_whose_denoiser_does_not_fit_the_latent_is_refused():
    toy = PROFILES["toy"]
    with pytest.raises(ValueError, match="latent size"):
        BuildProfile("bad", toy.autoencoder, replace(toy.generator, image_size=8), toy.sampling, toy.filters)


def test_the_periocular_loss_weight_keeps_the_loss_scale_and_favours_the_eyes():
    weight = periocular_weight(16, eye_weight=10.0)
    assert weight.shape == (1, 1, 16, 16)
    assert float(weight.mean()) == pytest.approx(1.0)
    assert float(weight.max() / weight.min()) == pytest.approx(11.0)
    assert float(weight[..., 6, 5]) > float(weight[..., 14, 8])  # an eye cell over the chin


def test_the_ceiling_script_judges_the_builds_own_cached_networks(built, tiny_mema, capsys, monkeypatch):
    """``benchmarks/build_ceiling.py`` finds the autoencoder and judges a build trained (same
    cache names: it trains nothing new) and scores real photos and their round trip."""
    out, record, cache = built
    before = sorted(p.name for p in cache.glob("*/*"))
    script = Path(__file__).parents[1] / "benchmarks" / "build_ceiling.py"
    monkeypatch.setattr(sys, "argv", ["build_ceiling.py", "--source", str(tiny_mema), "--cache", str(cache),
                                      "--profile", "toy", "--built", str(out)])
    runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    assert sorted(p.name for p in cache.glob("*/*")) == before
    rows = json.loads(printed.strip().splitlines()[-1])
    assert set(rows) == {"real val photos", "autoencoder round trip"}
    assert all(0 <= r[k] <= 1 for r in rows.values() for k in ("plausible", "top1"))
    assert f"{1 - record['rejection_rate']['implausible']:.3f}" in printed
