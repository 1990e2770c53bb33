"""The calibration report runs end to end and its re-identification protocol is right."""
from __future__ import annotations

import torch

from data.calibration import calibration_report, identity_protocol, keep_eyes, mask_face
from data.regions import CANONICAL_LANDMARKS


def test_identity_protocol_counts_gallery_and_probes():
    identities = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    perfect = torch.nn.functional.one_hot(identities, 3).float()
    scores = identity_protocol(perfect, identities)
    assert scores["reid_top1"] == 1.0 and scores["reid_gallery"] == 3 and scores["reid_probes"] == 5
    wrong = perfect.clone()
    wrong[[1, 2, 4, 6, 7]] = perfect[[3, 3, 0, 0, 3]]  # every probe looks like someone else
    assert identity_protocol(wrong, identities)["reid_top1"] == 0.0


def test_views_keep_and_hide_the_right_regions():
    images = torch.rand(2, 3, 64, 64)
    landmarks = CANONICAL_LANDMARKS.repeat(2, 1, 1)
    eyes = keep_eyes(images, landmarks)
    y, x = int(0.42 * 64), int(0.35 * 64)
    assert torch.equal(eyes[..., y, x], images[..., y, x]) and (eyes[..., 60, 32] == 0.5).all()
    masked = mask_face(images, landmarks)
    assert (masked[..., y, x] == 0.5).all() and torch.equal(masked[..., 1, 1], images[..., 1, 1])


def test_report_runs_on_tiny_set(tiny_mema, capsys):
    scores = calibration_report(tiny_mema, image_size=32, disease_epochs=1, identity_epochs=1, batch_size=16,
                                leakage=True)
    for key in ("disease_accuracy", "disease_macro_f1", "reid_top1"):
        assert 0.0 <= scores[key] <= 1.0
    assert set(scores["sign_f1"]) and scores["reid_gallery"] == 4
    assert "re-id top-1" in capsys.readouterr().out
    assert {"reid_top1_eyes_only", "reid_top1_face_masked"} <= set(scores) and set(scores["blur"]) == {1.0, 2.0, 3.0}
