"""Network layers every trained network of the suite builds on: the data judges
(``data.calibration``, the builder's filters), the harness's evaluators and the methods.

They live here, in the bottom layer, because ``data`` may import nothing above it; methods reach
them through the training kit ``benchmark.api.nn`` (README, import rule). Sharing the code does
not couple the networks: each is trained from its own seed on its own data.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_NORMS = {"batch": nn.BatchNorm2d, "group": lambda c: nn.GroupNorm(8, c), None: None}
_ACTS = {"relu": lambda: nn.ReLU(inplace=True), "silu": nn.SiLU}


def conv_norm_act(cin: int, cout: int, *, stride: int = 1, norm: str | None = "batch",
                  act: str = "relu") -> nn.Sequential:
    """3x3 convolution, normalisation (``"batch"``, ``"group"``: 8 groups, independent of the
    batch-mates; or ``None``) and activation (``"relu"`` or ``"silu"``). The
    convolution has a bias only without a norm: a norm's own shift would cancel it."""
    if norm not in _NORMS or act not in _ACTS:
        raise ValueError(f"norm must be one of {list(_NORMS)} and act one of {list(_ACTS)}; "
                         f"got {norm!r}, {act!r}")
    layers = [nn.Conv2d(cin, cout, 3, stride, 1, bias=norm is None)]
    if norm is not None:
        layers.append(_NORMS[norm](cout))
    return nn.Sequential(*layers, _ACTS[act]())


class CosFaceHead(nn.Module):
    """Large-margin cosine classifier (Wang et al., "CosFace", CVPR 2018):
    logits ``s * (cos(theta_j) - m * [j == y])`` over the training identities; train it with
    cross-entropy. ``init_std`` is the spread of the initial class centres."""

    def __init__(self, embedding_dim: int, num_identities: int, scale: float, margin: float,
                 init_std: float = 0.01):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_identities, embedding_dim) * init_std)
        self.scale, self.margin = scale, margin

    def cosine(self, embeddings: Tensor) -> Tensor:
        """Cosine similarity of each embedding to each class centre ``[B, classes]``."""
        return F.normalize(embeddings) @ F.normalize(self.weight).t()

    def forward(self, embeddings: Tensor, targets: Tensor) -> Tensor:
        cosine = self.cosine(embeddings)
        margin = F.one_hot(targets, cosine.shape[1]) * self.margin
        return self.scale * (cosine - margin)

    def loss_and_accuracy(self, embeddings: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """The training step of a recogniser: CosFace cross-entropy, and top-1 accuracy of the
        nearest class centre (no margin)."""
        loss = F.cross_entropy(self(embeddings, targets), targets)
        accuracy = (self.cosine(embeddings).argmax(1) == targets).float().mean()
        return loss, accuracy
