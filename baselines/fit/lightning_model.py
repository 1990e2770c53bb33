"""Lightning glue of FIT (Gu et al., ECCV 2020): the multi-task training of the
password-conditioned transformer (its recogniser trains with ``benchmark.api.recognition``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.api.nn import CosFaceHead, PatchCritic, through_uint8
from benchmark.api.recognition import Recogniser, RecogniserGANModule
from benchmark.api.training import other_passwords

from .config import FITConfig
from .torch_model import PasswordTransformer


def high_pass(images: Tensor) -> Tensor:
    """What a 2x2 box filter removes: the checkerboard a coupling on sub-pixel halves can leave."""
    low = F.interpolate(F.avg_pool2d(images, 2), scale_factor=2.0, mode="nearest")
    return images - low


class FITModule(RecogniserGANModule):
    """FIT's multi-task objective, per batch of faces x with random passwords p, q, k (q, k != p):

    - anonymised ``M = G(x, p)`` and ``M' = G(x, q)``; recovered ``R = G(8bit(M), ~p)``; wrong
      recovery ``W = G(8bit(M), ~k)`` (8bit: the PNG a user stores);
    - LSGAN critic on M, M', W against real faces;
    - L1: R to x (the recovery term, weight 100), M to x (pose and background stay), W to x
      (FIT's term; off in our presets, see README);
    - smooth: the high-pass of M - x (no sub-pixel checkerboard);
    - recogniser: M and W pushed off the source identity's class centre, R pulled onto it
      (cross-entropy); password diversity: cosine of M and M' and of M and W pushed below 0;
    - range: M and M' kept inside [0, 1] (clipping there would break the exact inverse).

    As in FIT, the recogniser is not frozen: it keeps learning to recognise the real, anonymised
    and wrongly recovered faces as the source (alongside the critic), so the transformer cannot
    settle on perturbations that fool only the recogniser's first version. It stays in eval
    mode (BatchNorm statistics from pre-training).
    """

    def __init__(self, transformer: PasswordTransformer, recogniser: Recogniser,
                 head: CosFaceHead, cfg: FITConfig):
        super().__init__()
        self.automatic_optimization = False  # critic/recogniser and transformer take turns
        self.transformer, self.recogniser, self.head, self.cfg = transformer, recogniser, head, cfg
        self.critic = PatchCritic(cfg.disc_width)

    def train(self, mode: bool = True) -> "FITModule":
        super().train(mode)
        self.recogniser.eval()
        return self

    def _identity_loss(self, images: Tensor, target: Tensor) -> Tensor:
        """CosFace cross-entropy of ``images`` against the first ``len(images)`` targets."""
        target = target[:len(images)]
        return F.cross_entropy(self.head(self.recogniser(images), target), target)

    def training_step(self, batch, batch_idx):
        cfg, x, target = self.cfg, batch["image"], batch["identity_class"]
        opt_g, opt_d = self.optimizers()
        p = torch.randint(0, 2, (len(x), self.transformer.password_bits), device=x.device).float()
        anon = self.transformer(x, p)
        stored = through_uint8(anon)
        # recovery, a second password and a wrong one on a share of the batch (CPU time)
        n = max(1, round(cfg.aux_fraction * len(x)))
        recovered = self.transformer(stored[:n], 1 - p[:n])
        anon_other = self.transformer(x[:n], other_passwords(p[:n]))
        # wrong passwords of the same direction: they run the inverse of another code's steps,
        # the case that can cancel the anonymisation (a wrong direction anonymises twice)
        wrong = self.transformer(stored[:n], 1 - other_passwords(p[:n], same_direction=True))
        fakes = (anon, anon_other, wrong)

        # -- critic and recogniser (FIT's D-side optimiser holds both)
        self._trainable(self.critic, self.recogniser, self.head)
        d_loss = self._lsgan(self.critic(x), 1.0) + sum(
            self._lsgan(self.critic(f.detach().clamp(0, 1)), 0.0) for f in fakes) / len(fakes)
        id_loss = sum(self._identity_loss(images[:n].detach().clamp(0, 1), target)
                      for images in (x, anon, wrong)) / 3
        opt_d.zero_grad()
        self.manual_backward(d_loss + id_loss)
        opt_d.step()

        # -- transformer
        self._trainable(self.transformer)
        emb = {name: self.recogniser(images.clamp(0, 1)) for name, images in
               (("anon", anon), ("other", anon_other), ("wrong", wrong), ("recovered", recovered))}
        centre = F.normalize(self.head.weight)[target]

        def source_cos(name: str) -> Tensor:
            return (emb[name] * centre[:len(emb[name])]).sum(1)

        def pair_cos(a: str, b: str, n: int | None = None) -> Tensor:
            return (emb[a][:n] * emb[b][:n]).sum(1)

        terms = {
            "gan": sum(self._lsgan(self.critic(f.clamp(0, 1)), 1.0) for f in fakes) / len(fakes),
            "recovery": F.l1_loss(recovered, x[:n]),
            "anon_l1": F.l1_loss(anon, x),
            "wrong_l1": F.l1_loss(wrong, x[:n]),
            "smooth": high_pass(anon - x).abs().mean(),
            "push": source_cos("anon").relu().mean() + source_cos("wrong").relu().mean(),
            "pull": F.cross_entropy(self.head(emb["recovered"], target[:n]), target[:n]),
            "diversity": pair_cos("anon", "other", n).relu().mean(),
            "wrong_diversity": pair_cos("anon", "wrong", n).relu().mean(),
            "range": sum((f - f.clamp(0, 1)).abs().mean() for f in (anon, anon_other)),
        }
        weights = {"gan": cfg.w_gan, "recovery": cfg.w_recovery, "anon_l1": cfg.w_anon_l1,
                   "wrong_l1": cfg.w_wrong_l1, "push": cfg.w_push, "pull": cfg.w_pull,
                   "diversity": cfg.w_diversity, "wrong_diversity": cfg.w_wrong_diversity,
                   "range": cfg.w_range, "smooth": cfg.w_smooth}
        loss = sum(weights[k] * v for k, v in terms.items())
        opt_g.zero_grad()
        self.manual_backward(loss)
        opt_g.step()

        self.log_dict({f"loss/{k}": v.detach() for k, v in terms.items()}, batch_size=len(x))
        self.log_dict({"loss": loss.detach(), "d_loss": d_loss.detach(),
                       "cos_src": source_cos("anon").detach().mean(),
                       "cos_pw": pair_cos("anon", "other", n).detach().mean()},
                      prog_bar=True, batch_size=len(x))

    @staticmethod
    def _lsgan(scores: Tensor, target: float) -> Tensor:
        return ((scores - target) ** 2).mean()

    def generator(self) -> nn.Module:
        return self.transformer
