"""The training kit methods share (benchmark.api.nn, benchmark.api.training, data.files)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmark.api.fitted import FittedMethod
from benchmark.api.nn import CosFaceHead, conv_norm_act, occlude, random_shift
from benchmark.api.training import derive_seed, materialize, stage_path, tensor_loader
from data.files import atomic_directory, atomic_write
from data.regions import CANONICAL_LANDMARKS


def test_derive_seed_is_stable_and_distinct_per_name():
    assert derive_seed(0, "enc_med") == derive_seed(0, "enc_med")
    seeds = {derive_seed(s, n) for s in (0, 1) for n in ("enc_med", "id_net", "deid")}
    assert len(seeds) == 6
    assert 0 <= derive_seed(3, "x") < 2 ** 32


@pytest.mark.parametrize("norm,act", [("batch", "relu"), ("group", "silu"), (None, "relu")])
def test_conv_block_shapes(norm, act):
    block = conv_norm_act(3, 16, stride=2, norm=norm, act=act)
    assert block(torch.rand(2, 3, 32, 32)).shape == (2, 16, 16, 16)
    assert (block[0].bias is None) == (norm is not None)  # a norm's shift replaces the bias
    with pytest.raises(ValueError):
        conv_norm_act(3, 16, norm="layer")


def test_cosface_margin_lowers_only_the_target_logit():
    head = CosFaceHead(4, 3, scale=10.0, margin=0.3)
    emb, target = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    gap = head.scale * head.cosine(emb) - head(emb, target)
    assert torch.allclose(gap, 3.0 * torch.nn.functional.one_hot(target, 3))


def test_augmentations_keep_shape_and_repeat_under_a_seed():
    images = torch.rand(4, 3, 32, 32)
    marks = CANONICAL_LANDMARKS.expand(4, 5, 2) * 0.5
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        outs.append((occlude(images, marks, 0.5, 0.5), random_shift(images, 3)))
    for a, b in zip(*outs):
        assert a.shape == images.shape and torch.equal(a, b)
    assert not torch.equal(outs[0][1], images)  # a shift of up to 3 px moved something


def test_tensor_loader_round_trip():
    loader = [{"image": torch.rand(3, 3, 8, 8), "label": torch.arange(3), "name": ["a"] * 3}]
    data = materialize(loader)
    assert set(data) == {"image", "label"} and data["image"].dtype == torch.uint8
    batches = list(tensor_loader(data, 2, False, 0))
    assert batches[0]["image"].dtype == torch.float32 and len(batches) == 2


def test_stage_path_changes_with_config_seed_and_data(tmp_path):
    base = stage_path(tmp_path, "enc", {"lr": 1}, 0, "fp")
    assert base == stage_path(tmp_path, "enc", {"lr": 1}, 0, "fp")
    others = {stage_path(tmp_path, "enc", {"lr": 2}, 0, "fp"),
              stage_path(tmp_path, "enc", {"lr": 1}, 1, "fp"),
              stage_path(tmp_path, "enc", {"lr": 1}, 0, "other")}
    assert base not in others and len(others) == 3
    assert stage_path(None, "enc", {}, 0, "") is None


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "out.json"
    atomic_write(path, "old")
    monkeypatch.setattr("pathlib.Path.write_bytes",
                        lambda self, data: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        atomic_write(path, "new")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_directory_leaves_nothing_when_the_writer_raises(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "set") as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_cosface_training_step_loss_and_accuracy():
    from benchmark.api.nn import CosFaceHead

    head = CosFaceHead(4, 3, scale=16.0, margin=0.2)
    targets = torch.tensor([0, 1, 2])
    loss, accuracy = head.loss_and_accuracy(head.weight.detach().clone(), targets)
    assert accuracy == 1.0  # each embedding is its own class centre
    assert loss == torch.nn.functional.cross_entropy(head(head.weight.detach(), targets), targets)
    _, wrong = head.loss_and_accuracy(head.weight.detach()[[1, 2, 0]], targets)
    assert wrong == 0.0


class _Doubler(FittedMethod):
    """The smallest fitted method: one 1x1 convolution."""

    name = "doubler"
    networks = ("conv",)
    chunk_size = 3

    def make_config(self, profile, **options):
        return _DoublerConfig(**options)

    def build_networks(self):
        return {"conv": torch.nn.Conv2d(3, 3, 1)}

    def extra_state(self):
        return {"calls": 0}

    def anonymize(self, batch, keys):
        return self.run_chunked(self.conv, batch["image"])


@dataclasses.dataclass
class _DoublerConfig:
    width: int = 1


def test_fitted_method_saves_loads_and_refuses_another_config():
    method = _Doubler()
    with pytest.raises(RuntimeError, match="doubler: call fit"):
        method.anonymize({"image": torch.rand(2, 3, 4, 4)}, None)
    method.set_networks(**method.build_networks())
    state = method.state_dict()
    assert set(state) == {"config", "calls", "conv"}
    assert state["config"] == {"width": 1, "fit_recipe": 1}
    other = _Doubler()
    other.load_state_dict(state)
    images = torch.rand(7, 3, 4, 4)  # 7 images in chunks of 3: the last chunk is short
    out = other.anonymize({"image": images}, None)
    assert out.shape == images.shape and torch.allclose(out, method.conv(images), atol=1e-6)
    with pytest.raises(ValueError, match="different config"):
        _Doubler(width=2).load_state_dict(state)
    newer_code = type("NewerDoubler", (_Doubler,), {"fit_recipe": 2})()  # same config, new recipe
    with pytest.raises(ValueError, match="different config"):
        newer_code.load_state_dict(state)


def test_fitted_method_stage_paths_depend_only_on_the_named_fields(tmp_path):
    a, b = _Doubler(work_dir=tmp_path), _Doubler(work_dir=tmp_path, width=2)
    assert a.stage_path("s", (), "fp") == b.stage_path("s", (), "fp")
    assert a.stage_path("s", None, "fp") != b.stage_path("s", None, "fp")
    assert _Doubler().stage_path("s", None, "fp") is None  # no work_dir, no cache
    assert _Doubler(trainer_kwargs={"fast_dev_run": True}).smoke_run


def test_fitted_method_checks_key_shape():
    method = _Doubler()
    method.key_bits = 4
    assert method.checked_keys(None, 3).shape == (3, 4)
    assert torch.equal(method.checked_keys(None, 3), method.checked_keys(None, 3))
    with pytest.raises(ValueError, match=r"keys must be \[3, 4\]"):
        method.checked_keys(torch.zeros(3, 5), 3)
