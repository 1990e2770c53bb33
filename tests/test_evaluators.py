"""Evaluators: trained once and cached, retrained on request, FaceNet from a local file;
and the scoring pieces of the evaluation pass."""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from benchmark.blinding import draw_keys, stream
from benchmark.scoring import (
    enrolment_split, identity_protocol, impostor_similarity, pair_protocol,
)
from benchmark.evaluators import (
    CosFaceHead, DiseaseClassifier, FaceNetRecognizer, IdentityRecognizer, LesionSegmenter,
    evaluator_dir, load_evaluators,
)
from benchmark.profiles import PROFILES, get_profile
from data.regions import CANONICAL_LANDMARKS, periocular_crop


def _datamodules(root):
    from data import MeMaDataModule, MeMaSegDataModule

    kwargs = dict(image_size=32, batch_size=16)
    dm, seg = MeMaDataModule(root, **kwargs), MeMaSegDataModule(root, **kwargs)
    dm.setup()
    seg.setup()
    return dm, seg


def test_evaluators_are_cached_and_retrained_on_request(tiny_mema, cache):
    dm, seg = _datamodules(tiny_mema)
    config = PROFILES["toy"].evaluators
    trainer = {"accelerator": "cpu", "enable_progress_bar": False}
    first = load_evaluators(dm, seg, "fp-test", config, trainer_kwargs=trainer)
    assert sorted(first.trained) == ["classifier", "identity", "segmenter"]
    directory = evaluator_dir("fp-test", config)
    assert directory == cache / "evaluators" / "fp-test" / config.digest()
    stamps = {p.name: p.stat().st_mtime_ns for p in directory.glob("*.pt")}
    assert set(stamps) == {"classifier.pt", "identity.pt", "segmenter.pt"}

    second = load_evaluators(dm, seg, "fp-test", config, trainer_kwargs=trainer)
    assert second.trained == []  # loaded, not retrained
    assert {p.name: p.stat().st_mtime_ns for p in directory.glob("*.pt")} == stamps
    images = dm.dataset("test")[0]["image"][None]
    torch.testing.assert_close(second.identity.embed(images), first.identity.embed(images))
    landmarks = CANONICAL_LANDMARKS[None]
    torch.testing.assert_close(second.classifier.predict(images, landmarks)[0],
                               first.classifier.predict(images, landmarks)[0])

    third = load_evaluators(dm, seg, "fp-test", config, retrain=True, trainer_kwargs=trainer)
    assert sorted(third.trained) == ["classifier", "identity", "segmenter"]
    # another evaluator config is another cache folder
    assert PROFILES["quick"].evaluators.digest() != config.digest()


def test_evaluator_outputs_have_the_documented_shapes():
    images = torch.rand(4, 3, 32, 32)
    clf = DiseaseClassifier(5, 3, channels=(8, 16, 32, 64), crop_size=(24, 48)).eval()
    landmarks = CANONICAL_LANDMARKS.repeat(4, 1, 1)
    probs, signs = clf.predict(images, landmarks)
    assert probs.shape == (4, 5) and signs.shape == (4, 3)
    torch.testing.assert_close(probs.sum(1), torch.ones(4))
    rec = IdentityRecognizer([3, 7, 9], backbone="resnet10t", embedding_dim=16).eval()
    emb = rec.embed(images)
    assert emb.shape == (4, 16)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(4))
    assert rec.class_of_identity[torch.tensor([3, 7, 9])].tolist() == [0, 1, 2]
    seg = LesionSegmenter("resnet18", 3, (32, 16, 8)).eval()
    assert seg.predict(images).shape == (4, 1, 32, 32)


def test_cosface_subtracts_the_margin_from_the_target_only():
    head = CosFaceHead(4, 3, scale=10.0, margin=0.3)
    emb = torch.randn(2, 4)
    logits = head(emb, torch.tensor([0, 2]))
    cosine = F.normalize(emb) @ F.normalize(head.weight).t()
    expected = 10 * (cosine - 0.3 * F.one_hot(torch.tensor([0, 2]), 3))
    torch.testing.assert_close(logits, expected)


def test_facenet_loads_a_local_state_dict(tmp_path):
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    weights = tmp_path / "facenet.pt"
    torch.save(InceptionResnetV1(pretrained=None, classify=False).state_dict(), weights)
    facenet = FaceNetRecognizer(weights)
    emb = facenet.embed(torch.rand(2, 3, 64, 64))
    assert emb.shape == (2, 512)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))


def test_facenet_weights_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="--facenet-weights: no such file"):
        FaceNetRecognizer(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not an InceptionResnetV1 state dict"):
        FaceNetRecognizer(bad)


# -- scoring pieces ---------------------------------------------------------------------------
def test_enrolment_is_the_first_image_of_each_identity():
    enrol, probes = enrolment_split(torch.tensor([5, 5, 2, 5, 2, 9]))
    assert enrol.tolist() == [0, 2, 5] and probes.tolist() == [1, 3, 4]


def test_reidentification_protocols_against_a_hand_computed_case():
    identity = torch.tensor([0, 0, 1, 1])
    gallery = torch.eye(4)
    # probes: images 0 and 1 unchanged, image 2 made to look like 0, image 3 like 2
    probes = torch.stack([gallery[0], gallery[1], gallery[0], gallery[2]])
    scores, chance = pair_protocol("reid", gallery, probes, identity, 50, 0)
    by_identity, by_identity_chance = identity_protocol("reid", gallery, probes, identity, 50, 0)
    scores.update(by_identity)
    chance.update(by_identity_chance)
    assert scores["reid_top1"].value == pytest.approx(0.5)  # probes 0 and 1 find their source
    assert chance["reid_top1"] == pytest.approx(0.25) and chance["reid_top1_identity"] == 0.5
    # identity protocol: enrolment = images 0 and 2; probe 1 is orthogonal to both (a tie:
    # 1/2), probe 3 looks like image 2, the same person (a hit)
    assert scores["reid_top1_identity"].value == pytest.approx(0.75)
    assert scores["reid_top1"].ci_low <= 0.5 <= scores["reid_top1"].ci_high


def test_impostor_and_genuine_similarity():
    emb = torch.tensor([[1.0, 0], [1.0, 0], [0, 1.0]])
    impostor, genuine = impostor_similarity(emb, torch.tensor([0, 0, 1]))
    assert impostor == pytest.approx(0.0) and genuine == pytest.approx(1.0)


def test_keys_are_reproducible_bits():
    keys = draw_keys(6, 16, stream(1, "keys"))
    assert keys.shape == (6, 16) and set(keys.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(keys, draw_keys(6, 16, stream(1, "keys")))
    assert not torch.equal(keys, draw_keys(6, 16, stream(2, "keys")))
    assert not torch.equal(keys, draw_keys(6, 16, stream(1, "other keys")))
    assert draw_keys(6, 0, stream(1, "keys")) is None  # keyless methods get no keys


def test_profiles_are_known_and_unknown_is_an_error():
    assert get_profile("quick").image_size == 64
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        get_profile("huge")


def test_periocular_crop_follows_the_landmarks():
    images = torch.zeros(2, 3, 64, 64)
    images[:, 0, 16:36, 10:54] = 1.0  # a red band across the eyes of a canonical face
    landmarks = CANONICAL_LANDMARKS.repeat(2, 1, 1)
    landmarks[1, :, 1] += 0.4  # second face lower in the frame: the band is no longer there
    crops = periocular_crop(images, landmarks, (12, 24))
    assert crops.shape == (2, 3, 12, 24)
    assert crops[0, 0].mean() > 0.3 and crops[1, 0].mean() < 0.05


def test_the_crops_direct_kernel_call_is_torchvisions_roi_align():
    """On CUDA the crop calls torchvision's kernel directly (its Python fallback under
    deterministic algorithms is unusable there): same arguments, same crops as roi_align."""
    from torchvision.ops import roi_align

    torch.manual_seed(0)
    images = torch.rand(3, 3, 64, 64)
    boxes = torch.tensor([[0, 5.0, 9.0, 50.0, 30.0], [1, 0.5, 2.0, 63.0, 20.0],
                          [2, 10.0, 10.0, 40.0, 25.0]])
    direct = torch.ops.torchvision.roi_align(images, boxes, 1.0, 12, 24, -1, True)
    assert torch.equal(direct, roi_align(images, boxes, (12, 24), aligned=True))


def test_recogniser_occlusion_keeps_eyes_and_hides_the_rest_of_the_face():
    from benchmark.evaluators.identity import occlude
    from data.regions import face_mask, periocular_mask

    torch.manual_seed(0)
    images = torch.rand(6, 3, 32, 32)
    landmarks = CANONICAL_LANDMARKS.expand(6, 5, 2)
    face, eyes = face_mask(landmarks, (32, 32)), periocular_mask(landmarks, (32, 32))
    changed = (occlude(images, landmarks, p_keep_eyes=1.0, p_erase=0.0) - images).abs().amax(1,
                                                                                        True)
    assert (changed[eyes.bool()] == 0).all()  # the periocular region is kept as it is
    assert (changed[~face.bool()] == 0).all()  # the background too
    hidden = (face * (1 - eyes)).bool()
    assert (changed[hidden] > 0).float().mean() > 0.95  # the rest of the face is replaced

    erased = (occlude(images, landmarks, p_keep_eyes=0.0, p_erase=1.0) - images).abs().amax(1)
    fraction = (erased > 0).flatten(1).float().mean(1)
    assert ((fraction > 0.005) & (fraction < 0.3)).all()  # one rectangle per image
    torch.testing.assert_close(occlude(images, landmarks, 0.0, 0.0), images)
    recogniser = IdentityRecognizer([0, 1], backbone="face_cnn", width=4, embedding_dim=8,
                                    max_shift=0, flip=False, p_keep_eyes=1.0, p_erase=0.0)
    torch.testing.assert_close(recogniser.augment(images, landmarks)[:, :, eyes[0, 0].bool()],
                               images[:, :, eyes[0, 0].bool()])
    assert recogniser(images).shape == (6, 8)


def test_vectorised_f1_matches_torchmetrics():
    from torchmetrics.functional.classification import multiclass_f1_score, multilabel_f1_score

    from benchmark.attacks import TestSet
    from benchmark.evaluation import TestSplit, diagnosis_scores

    torch.manual_seed(0)
    label, pred = torch.randint(0, 5, (60,)), torch.randint(0, 4, (60,))  # class 4 never predicted
    signs, sign_probs = (torch.rand(60, 6) < 0.3).float(), torch.rand(60, 6)
    signs[:, 5] = 0
    identity = torch.arange(60) // 3
    split = TestSplit(TestSet(torch.zeros(60, 3, 1, 1, dtype=torch.uint8), torch.zeros(60, 5, 2),
                              identity, torch.zeros(60, dtype=torch.long)),
                      label, signs, torch.arange(60))
    scores = diagnosis_scores(pred, sign_probs, split, 6, 50, 0)  # class 5 absent
    assert scores["macro_f1"].value == pytest.approx(
        float(multiclass_f1_score(pred, label, 6, average="macro")))
    assert scores["sign_f1"].value == pytest.approx(
        float(multilabel_f1_score(sign_probs, signs.long(), 6, average="macro")))
    assert scores["macro_f1"].ci_low <= scores["macro_f1"].value <= scores["macro_f1"].ci_high
