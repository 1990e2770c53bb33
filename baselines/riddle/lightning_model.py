"""Lightning glue of RiDDLE (Li et al., CVPR 2023): the autoencoder's fine-tuning and the
multi-task training of the latent encryptor. The training-time recogniser is FIT's
(``baselines.fit``: the same CNN, CosFace pre-training and 8-bit storage step)."""
from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.api.nn import CosFaceHead, PatchCritic, through_uint8
from benchmark.api.recognition import Recogniser, RecogniserGANModule
from benchmark.api.training import adamw_cosine, other_passwords

from .config import RiDDLEConfig
from .torch_model import Autoencoder, LatentEncryptor


class AutoencoderModule(L.LightningModule):
    """Fine-tunes the PCA-initialised autoencoder on the training faces (pixel MSE: the
    recovery PSNR it bounds)."""

    def __init__(self, autoencoder: Autoencoder, lr: float, epochs: int):
        super().__init__()
        self.autoencoder, self.lr, self.epochs = autoencoder, lr, epochs

    def training_step(self, batch, batch_idx):
        x = batch["image"]
        loss = F.mse_loss(self.autoencoder(x), x)
        psnr = -10 * torch.log10(loss.detach())
        self.log_dict({"ae_loss": loss, "ae_psnr": psnr}, prog_bar=True, batch_size=len(x))
        return loss

    def configure_optimizers(self):
        return adamw_cosine(self.parameters(), self.lr, self.epochs)


def encrypt(autoencoder: Autoencoder, encryptor: LatentEncryptor, images: Tensor,
            passwords: Tensor) -> Tensor:
    """``D(M(E(images), p))``, unclipped: encryption of a face and, with the same password,
    decryption of an encrypted one (``M`` is an involution)."""
    return autoencoder.decode(encryptor(autoencoder.encode(images), passwords))


class RiDDLEModule(RecogniserGANModule):
    """RiDDLE's objective, per batch of faces x (latent ``w = E(x)``, face masks m) with random
    passwords p, q, k (q, k != p); the autoencoder stays frozen, as the paper's StyleGAN:

    - encrypted ``A = m D(M(w, p)) + (1 - m) x``, a second password's ``A' = ... M(w, q)``;
      recovered latent ``M(E(8bit(A)), p)`` and face ``R = D(...)``; wrong-password decryption
      ``W = D(M(E(8bit(A)), k))`` (8bit: the PNG a user stores);
    - identity (the paper's identity loss): A and W pushed off the source identity's class
      centre; diversity (the paper's): cosine of A and A' embeddings pushed below 0;
    - latent reconstruction (the paper's): the recovered latent to w; recovery: R to x (L1);
      pixel: ``D(M(w, p))`` to x (L1), what keeps pose, expression and the medical signs
      (before the paste, so the background's latent also stays what the re-encoding finds);
    - an LSGAN patch critic on A, A', W (ours), a range term on the decoded pixels (ours) and a
      smoothness term on the change ``D(M(w, p)) - x`` (ours: without it the identity push
      settles on texture in the autoencoder's finest components, blocky at the 8 px cells).

    As in FIT, the recogniser keeps learning to recognise the encrypted and wrongly decrypted
    faces as the source, so the encryptor cannot settle on perturbations that fool only the
    recogniser's first version (it stays in eval mode: BatchNorm statistics from pre-training).
    """

    def __init__(self, autoencoder: Autoencoder, encryptor: LatentEncryptor,
                 recogniser: Recogniser, head: CosFaceHead, cfg: RiDDLEConfig):
        super().__init__()
        self.automatic_optimization = False  # critic/recogniser and encryptor take turns
        self.autoencoder, self.encryptor, self.cfg = autoencoder, encryptor, cfg
        self.recogniser, self.head = recogniser, head
        self.critic = PatchCritic(cfg.disc_width)
        self.autoencoder.requires_grad_(False)

    def train(self, mode: bool = True) -> "RiDDLEModule":
        super().train(mode)
        self.autoencoder.eval()
        self.recogniser.eval()
        return self

    def training_step(self, batch, batch_idx):
        cfg, x, target, mask = self.cfg, batch["image"], batch["identity_class"], batch["mask"]
        opt_g, opt_d = self.optimizers()
        p = torch.randint(0, 2, (len(x), cfg.key_bits), device=x.device).float()
        n = max(1, round(cfg.aux_fraction * len(x)))
        raw = encrypt(self.autoencoder, self.encryptor, x, p)
        raw_other = encrypt(self.autoencoder, self.encryptor, x[:n], other_passwords(p[:n]))
        anon = torch.lerp(x, raw, mask)
        anon_other = torch.lerp(x[:n], raw_other, mask[:n])
        stored = self.autoencoder.encode(through_uint8(anon[:n]))
        latent_back = self.encryptor(stored, p[:n])
        recovered = self.autoencoder.decode(latent_back)
        wrong = self.autoencoder.decode(self.encryptor(stored, other_passwords(p[:n])))
        fakes = (anon, anon_other, wrong)

        # -- critic and recogniser (one optimiser, as FIT's D side)
        self._trainable(self.critic, self.recogniser, self.head)
        d_loss = _lsgan(self.critic(x), 1.0) + sum(
            _lsgan(self.critic(f.detach().clamp(0, 1)), 0.0) for f in fakes) / len(fakes)
        id_loss = sum(F.cross_entropy(self.head(self.recogniser(im[:n].detach().clamp(0, 1)),
                                                target[:n]), target[:n])
                      for im in (x, anon, wrong)) / 3
        opt_d.zero_grad()
        self.manual_backward(d_loss + id_loss)
        opt_d.step()

        # -- encryptor
        self._trainable(self.encryptor)
        emb = {name: self.recogniser(im.clamp(0, 1)) for name, im in
               (("anon", anon), ("other", anon_other), ("wrong", wrong))}
        centre = F.normalize(self.head.weight)[target]

        def source_cos(name: str) -> Tensor:
            return (emb[name] * centre[:len(emb[name])]).sum(1)

        with torch.no_grad():
            latent = self.autoencoder.encode(x[:n])
        terms = {
            "identity": source_cos("anon").relu().mean() + source_cos("wrong").relu().mean(),
            "diversity": (emb["anon"][:n] * emb["other"]).sum(1).relu().mean(),
            "latent": F.mse_loss(latent_back, latent),
            "recovery": F.l1_loss(recovered, x[:n]),
            "pixel": F.l1_loss(raw, x),  # the whole decoded face: its re-encoding is w'
            "smooth": high_pass(raw - x).abs().mean(),
            "gan": sum(_lsgan(self.critic(f.clamp(0, 1)), 1.0) for f in fakes) / len(fakes),
            "range": sum((f - f.clamp(0, 1)).abs().mean() for f in (raw, raw_other, recovered)),
        }
        weights = {"identity": cfg.w_identity, "diversity": cfg.w_diversity,
                   "latent": cfg.w_latent, "recovery": cfg.w_recovery, "pixel": cfg.w_pixel,
                   "smooth": cfg.w_smooth, "gan": cfg.w_gan, "range": cfg.w_range}
        loss = sum(weights[k] * v for k, v in terms.items())
        opt_g.zero_grad()
        self.manual_backward(loss)
        opt_g.step()

        self.log_dict({f"loss/{k}": v.detach() for k, v in terms.items()}, batch_size=len(x))
        self.log_dict({"loss": loss.detach(), "d_loss": d_loss.detach(),
                       "cos_src": source_cos("anon").detach().mean(),
                       "rec_l1": terms["recovery"].detach()}, prog_bar=True, batch_size=len(x))

    def generator(self) -> nn.Module:
        return self.encryptor


def high_pass(images: Tensor, size: int = 5) -> Tensor:
    """What a ``size`` x ``size`` box blur removes: texture and the latent cells' edges."""
    return images - F.avg_pool2d(images, size, 1, size // 2, count_include_pad=False)


def _lsgan(scores: Tensor, target: float) -> Tensor:
    return ((scores - target) ** 2).mean()
