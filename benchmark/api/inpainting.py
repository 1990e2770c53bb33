"""What the inpainting-GAN de-identifiers share (``baselines/ciagan``, ``baselines/deepprivacy2``,
``medsem_deid``): part of the training kit, so methods may import it (README, import rule).

Both replace the face region with what a generator paints there, given the image with that
region blanked out: the region (:func:`deid_mask`, the whole head or the head with eye holes),
the U-Net generator (:class:`InpaintingUNet`, a code injected at its bottleneck), the critic
(:class:`Critic`), the GAN losses, the composite (:func:`composite`: pixels outside the region
are the input's, bit for bit), the training loop (:class:`InpaintingGANModule`) and the plugin
(:class:`InpaintingGAN`: fit through Lightning, cached in ``work_dir``, chunked ``anonymize``).
A method says what its code is (a target identity, a noise vector), what the generator and the
critic see, and which extra losses it adds.
"""
from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fitted import FittedMethod, MethodConfig
from .nn import conv_norm_act
from .training import (data_fingerprint, derive_seed, load_stage, make_trainer, materialize,
                       metrics_line, stage_path, tensor_loader)
from data.regions import CANONICAL_LANDMARKS, face_mask, periocular_mask

log = logging.getLogger(__name__)


# -- the region and the composite --------------------------------------------------------------
def deid_mask(landmarks: Tensor, size: tuple[int, int], keep_eyes: bool) -> Tensor:
    """``[B,1,H,W]`` {0,1} float mask of the pixels the generator replaces: the whole head
    (``data.regions.face_mask``), with holes over both eyes, lids and brows if ``keep_eyes``
    (the periocular region, where the eye signs show, keeps its original pixels)."""
    mask = face_mask(landmarks, size)
    if keep_eyes:
        mask = mask * (1 - periocular_mask(landmarks, size))
    return mask


def composite(image: Tensor, generated: Tensor, mask: Tensor) -> Tensor:
    """``generated`` inside ``mask``, ``image`` outside: a selection, not a blend, so every pixel
    outside the mask is the input's exactly."""
    return torch.where(mask > 0, generated, image)


def landmark_heatmaps(landmarks: Tensor, size: tuple[int, int], sigma: float = 0.03) -> Tensor:
    """``[B,5,H,W]``: one Gaussian blob per landmark (``sigma`` in units of the image width), the
    pose sketch a generator or critic reads."""
    h, w = size
    ys = ((torch.arange(h, device=landmarks.device) + 0.5) / h).view(1, 1, h, 1)
    xs = ((torch.arange(w, device=landmarks.device) + 0.5) / w).view(1, 1, 1, w)
    dist2 = (xs - landmarks[..., 0, None, None]) ** 2 + (ys - landmarks[..., 1, None, None]) ** 2
    return torch.exp(-dist2 / (2 * sigma ** 2))


def per_image_draw(seed: int, name: str, index: Tensor, draw: Callable[[torch.Generator], Tensor]
                   ) -> Tensor:
    """One draw per image from a generator seeded by (``seed``, ``name``, the image's index):
    the same image gets the same draw in any batch, in any order, in any process."""
    return torch.stack([draw(torch.Generator().manual_seed(derive_seed(seed, f"{name}/{i}")))
                        for i in index.tolist()])


# -- networks ------------------------------------------------------------------------------------
def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    # GroupNorm, not BatchNorm: a generated face must not depend on its batch-mates
    return conv_norm_act(cin, cout, stride=stride, norm="group", act="silu")


class InpaintingUNet(nn.Module):
    """U-Net inpainting generator: a stride-2 stem and ``depth - 1`` more stride-2 encoder
    levels (channels ``width * 2^i``, at most ``4 * width``), a bottleneck that joins the code
    ``[B, code_dim]`` (projected, broadcast over the bottleneck map and mixed by a convolution),
    a decoder of nearest-neighbour upsampling + convolutions with the encoder's skip connections
    (no transposed convolutions: no checkerboard) whose every level the code also modulates
    (a per-channel scale and shift, as StyleGAN's styles: a code that only enters at the
    bottleneck is easily ignored, which collapses the output to one face), and one
    full-resolution convolution over the
    upsampled features and the input itself. At 64 px on a CPU the full-resolution layers cost
    the most, so the network works at half resolution and the input skip brings the surrounding
    pixels back at full resolution. The output is ``sigmoid(template logits + network)``, the
    template being the mean training face (:meth:`set_template`; the crops are aligned): the
    generator starts from a face, not from grey, and the GAN's few CPU minutes go to the
    details and the variety. Returns ``[B,3,H,W]`` in (0, 1); H and W must be divisible by
    ``2 ** depth``."""

    def __init__(self, in_channels: int, code_dim: int, width: int = 16, depth: int = 4):
        super().__init__()
        chans = [width * min(2 ** i, 4) for i in range(depth)]
        self.stem = _conv(in_channels, chans[0], 2)
        self.down = nn.ModuleList(
            nn.Sequential(_conv(chans[i], chans[i + 1], 2), _conv(chans[i + 1], chans[i + 1]))
            for i in range(depth - 1))
        self.code = nn.Sequential(nn.Linear(code_dim, chans[-1]), nn.SiLU())
        self.bottleneck = _conv(2 * chans[-1], chans[-1])
        self.up = nn.ModuleList(
            nn.Sequential(_conv(chans[i + 1] + chans[i], chans[i]), _conv(chans[i], chans[i]))
            for i in reversed(range(depth - 1)))
        self.styles = nn.ModuleList(nn.Linear(code_dim, 2 * chans[i])
                                    for i in reversed(range(depth - 1)))
        self.full_resolution = _conv(chans[0] + in_channels, chans[0])
        self.to_rgb = nn.Conv2d(chans[0], 3, 1)
        self.register_buffer("template", torch.zeros(3, 1, 1))  # logits; 0: grey

    def set_template(self, mean_face: Tensor) -> None:
        """Start the output from ``mean_face`` ``[3,H,W]`` in [0,1] (the mean training face)."""
        self.template = torch.logit(mean_face.float().clamp(0.02, 0.98)).to(self.template.device)

    def forward(self, x: Tensor, code: Tensor) -> Tensor:
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        h = skips.pop()
        injected = self.code(code)[:, :, None, None].expand(-1, -1, *h.shape[-2:])
        h = self.bottleneck(torch.cat([h, injected], 1))
        for block, style in zip(self.up, self.styles):
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            scale, shift = style(code)[:, :, None, None].chunk(2, dim=1)
            h = block(torch.cat([h, skip], 1)) * (1 + scale) + shift
        h = F.interpolate(h, size=x.shape[-2:], mode="nearest")
        template = self.template
        if template.shape[-2:] != x.shape[-2:]:
            template = F.interpolate(template[None], size=x.shape[-2:], mode="bilinear",
                                     align_corners=False)[0]
        return torch.sigmoid(template + self.to_rgb(self.full_resolution(torch.cat([h, x], 1))))


class Critic(nn.Module):
    """Convolutional critic: ``depth`` stride-2 levels without normalisation (the R1 penalty
    and the per-image score need none), then a 3x3 convolution to one logit per patch, averaged
    into one logit per image ``[B]``. He-initialised: without a normalisation PyTorch's default
    initialisation shrinks the signal at every layer, and the critic then barely learns (its
    loss sat at 2 ln 2 while the generator drew blurs)."""

    def __init__(self, in_channels: int, width: int = 16, depth: int = 4):
        super().__init__()
        chans = [in_channels] + [width * min(2 ** i, 8) for i in range(depth)]
        self.features = nn.Sequential(
            *(conv_norm_act(chans[i], chans[i + 1], stride=2, norm=None, act="silu")
              for i in range(depth)))
        self.logit = nn.Conv2d(chans[-1], 1, 3, padding=1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.logit(self.features(x)).mean(dim=(1, 2, 3))


# -- losses --------------------------------------------------------------------------------------
def critic_loss(kind: str, real: Tensor, fake: Tensor) -> Tensor:
    """The critic's loss on real and fake logits: ``"ns"`` (the non-saturating logistic loss of
    Goodfellow et al. 2014, StyleGAN2's and DeepPrivacy2's) or ``"lsgan"`` (least squares, Mao
    et al. 2017, CIAGAN's)."""
    if kind == "ns":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "lsgan":
        return ((real - 1) ** 2).mean() + (fake ** 2).mean()
    raise ValueError(f"unknown GAN loss {kind!r}")


def generator_loss(kind: str, fake: Tensor) -> Tensor:
    """The generator's side of :func:`critic_loss`."""
    if kind == "ns":
        return F.softplus(-fake).mean()
    if kind == "lsgan":
        return ((fake - 1) ** 2).mean()
    raise ValueError(f"unknown GAN loss {kind!r}")


def r1_penalty(real_logits: Tensor, real_images: Tensor) -> Tensor:
    """R1 (Mescheder et al., ICML 2018): the squared gradient norm of the critic on real images,
    per image, averaged; ``real_images`` must require grad."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


# -- configuration -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class GANConfig(MethodConfig):
    """Hyper-parameters both inpainting GANs have; a method's config adds its own fields."""

    batch_size: int = 16
    width: int = 16  # generator base width
    disc_width: int = 16  # critic base width
    code_dim: int = 64  # the code joined at the generator's bottleneck
    epochs: int = 10
    lr: float = 2e-3
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = 0.0  # R1 weight (gamma / 2 * ||grad||^2); 0: off
    r1_every: int = 4  # lazy R1 (StyleGAN2): every k-th critic step, weighted by k
    w_epsilon: float = 0.0  # drift penalty on the real logits (Karras et al. 2018)




# -- training ------------------------------------------------------------------------------------
class InpaintingGANModule(L.LightningModule):
    """Alternating critic / generator steps on composites (the generator's output inside the
    mask, the real image outside: what ``anonymize`` returns is what the critic judges).

    A method sets ``gan_loss`` and implements :meth:`train_codes`; it may override
    :meth:`critic_input` (default: image and mask), :meth:`extra_terms` (extra generator
    losses, ``{name: (weight, value)}``) and :meth:`adversary_loss` with
    :meth:`adversary_parameters` (other networks that learn from the composites in the critic's
    step, e.g. an identity adversary)."""

    gan_loss = "ns"

    def __init__(self, generator: nn.Module, critic: nn.Module, cfg: GANConfig, keep_eyes: bool):
        super().__init__()
        self.automatic_optimization = False  # critic and generator take turns
        self.generator, self.critic, self.cfg, self.keep_eyes = generator, critic, cfg, keep_eyes

    def train_codes(self, batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def critic_input(self, image: Tensor, landmarks: Tensor, mask: Tensor) -> Tensor:
        return torch.cat([image, mask], 1)

    def extra_terms(self, batch: dict[str, Tensor], fake: Tensor, codes: Tensor
                    ) -> dict[str, tuple[float, Tensor]]:
        return {}

    def adversary_parameters(self) -> list[nn.Parameter]:
        """Parameters, besides the critic's, that :meth:`adversary_loss` trains."""
        return []

    def adversary_loss(self, batch: dict[str, Tensor], fake: Tensor) -> Tensor | None:
        """A loss added to the critic's, on detached composites (``None``: no adversary)."""
        return None

    def training_step(self, batch, batch_idx):
        cfg, x, landmarks = self.cfg, batch["image"], batch["landmarks"]
        opt_g, opt_d = self.optimizers()
        mask = deid_mask(landmarks, x.shape[-2:], self.keep_eyes)
        codes = self.train_codes(batch)
        fake = composite(x, self.generator(x, landmarks, mask, codes), mask)

        lazy_r1 = cfg.r1_gamma > 0 and batch_idx % cfg.r1_every == 0
        real = x.detach().requires_grad_(lazy_r1)
        real_logits = self.critic(self.critic_input(real, landmarks, mask))
        fake_logits = self.critic(self.critic_input(fake.detach(), landmarks, mask))
        d_loss = critic_loss(self.gan_loss, real_logits, fake_logits)
        if cfg.w_epsilon:
            d_loss = d_loss + cfg.w_epsilon * real_logits.pow(2).mean()
        if lazy_r1:
            d_loss = d_loss + cfg.r1_gamma / 2 * cfg.r1_every * r1_penalty(real_logits, real)
        adversary = self.adversary_loss(batch, fake.detach())
        if adversary is not None:
            d_loss = d_loss + adversary
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()

        terms = {"adversarial": (1.0, generator_loss(
            self.gan_loss, self.critic(self.critic_input(fake, landmarks, mask))))}
        terms.update(self.extra_terms(batch, fake, codes))
        g_loss = sum(weight * value for weight, value in terms.values())
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()

        self.log_dict({f"loss/{k}": v.detach() for k, (_, v) in terms.items()},
                      batch_size=x.shape[0])
        self.log_dict({"g_loss": g_loss.detach(), "d_loss": d_loss.detach()}, prog_bar=True,
                      batch_size=x.shape[0])

    def configure_optimizers(self):
        cfg = self.cfg
        return [torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=cfg.betas),
                torch.optim.Adam([*self.critic.parameters(), *self.adversary_parameters()],
                                 lr=cfg.lr, betas=cfg.betas)]


# -- the plugin ----------------------------------------------------------------------------------
def _set_template(generator: nn.Module, mean_face: Tensor) -> None:
    for module in generator.modules():
        if isinstance(module, InpaintingUNet):
            module.set_template(mean_face)


class InpaintingGAN(FittedMethod):
    """A de-identifier that inpaints the face region with a trained generator.

    Subclasses set ``presets`` (profile -> config), ``keep_eyes``, and implement
    :meth:`build_generator`, :meth:`build_module` (the Lightning module that trains it) and
    :meth:`draw_codes` (the code per test image, from the method seed and the image's index);
    :meth:`prepare` trains what the GAN needs first (a recogniser, ...), cached by stage.
    Options (keyword) override single fields of the profile's config.
    """

    presets: dict[str, GANConfig] = {}
    #: keep the periocular region's pixels (the eye signs) and inpaint the rest of the head
    keep_eyes = False
    networks = ("generator",)
    #: what :meth:`fit` reads of each training batch (and hands to :meth:`prepare` and the GAN)
    train_keys: tuple[str, ...] = ("image", "identity", "landmarks")
    fit_recipe = 2

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        #: the mean training face the generator starts from
        self.mean_face: Tensor | None = None
        #: sizes read from the training split (number of identities, ...)
        self.shapes: dict[str, int] = {}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "keep_eyes": self.keep_eyes}

    @property
    def tag(self) -> str:
        """This method's class name (its stages' file prefix; ``name`` may be a registry path)."""
        return type(self).name or type(self).__name__.lower()

    # -- hooks ---------------------------------------------------------------------------------
    def prepare(self, data: dict[str, Tensor], stage: Callable[[str, dict], Path | None]
                ) -> dict[str, Any]:
        """Train what the GAN needs before it (``stage(name, config)`` gives a stage's cache
        path, or ``None``); returns keyword arguments for :meth:`build_module`."""
        return {}

    def build_generator(self) -> nn.Module:
        raise NotImplementedError

    def build_module(self, generator: nn.Module, **extras) -> InpaintingGANModule:
        raise NotImplementedError

    def draw_codes(self, index: Tensor) -> Tensor:
        raise NotImplementedError

    def build_networks(self) -> dict[str, nn.Module]:
        generator = self.build_generator()
        _set_template(generator, self.mean_face)  # the buffer takes the training size
        return {"generator": generator}

    def extra_state(self) -> dict[str, Any]:
        return {"shapes": dict(self.shapes), "mean_face": self.mean_face.cpu()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.shapes = dict(state["shapes"])
        self.mean_face = state["mean_face"]

    # -- training --------------------------------------------------------------------------------
    def fit(self, train) -> None:
        """Train (after :meth:`prepare`'s stages) the generator against the critic on the
        training split; the result and every stage are cached under ``work_dir``, keyed by
        config, seed and dataset fingerprint, and an interrupted GAN run resumes."""
        train.setup()
        fingerprint = data_fingerprint(train)

        def stage(name: str, config: dict) -> Path | None:
            return stage_path(self.work_dir, f"{self.tag}-{name}", config, self.seed, fingerprint)

        run_dir = stage("gan", self.config())
        final = run_dir / "fitted.pt" if run_dir else None
        if final is not None and final.exists():
            self.load_state_dict(load_stage(final))
            return
        data = materialize(train.train_dataloader(), self.train_keys)
        with tempfile.TemporaryDirectory() as scratch:
            run_dir = run_dir or Path(scratch)
            extras = self.prepare(data, stage)
            L.seed_everything(derive_seed(self.seed, "gan"), verbose=False)
            self.mean_face = data["image"].float().mean(0) / 255
            generator = self.build_networks()["generator"]
            module = self.build_module(generator, **extras)
            last = run_dir / "last.ckpt"
            trainer = make_trainer(run_dir, self.cfg.epochs, self.trainer_kwargs,
                                   resumable=not self.smoke_run)
            trainer.fit(module, tensor_loader(data, self.cfg.batch_size, True,
                                              derive_seed(self.seed, "gan/order")),
                        ckpt_path=last if last.exists() else None)
            log.info("%s generator trained: %s", self.tag, metrics_line(trainer))
        self.set_networks(generator=generator)
        self.save_fitted(final)

    # -- inference -------------------------------------------------------------------------------
    def anonymize(self, batch: dict[str, Tensor], keys: Tensor | None) -> Tensor:
        """Inpaint the region of ``batch["image"]`` with the generator, each image from its own
        code (:meth:`draw_codes` of ``batch["index"]``); pixels outside the region are the
        input's, bit for bit."""
        self.require_fitted()
        images = batch["image"]
        index = batch.get("index")
        index = torch.arange(len(images)) if index is None else torch.as_tensor(index).view(-1)
        return self.inpaint(images, batch.get("landmarks"), self.draw_codes(index))

    def inpaint(self, images: Tensor, landmarks: Tensor | None, codes: Tensor) -> Tensor:
        """The composite for explicit ``codes`` (one per image)."""
        if landmarks is None:
            landmarks = CANONICAL_LANDMARKS.expand(len(images), 5, 2)

        def composite_chunk(x: Tensor, marks: Tensor, code: Tensor) -> Tensor:
            mask = deid_mask(marks, x.shape[-2:], self.keep_eyes)
            return composite(x, self.generator(x, marks, mask, code), mask)

        return self.run_chunked(composite_chunk, images, landmarks, codes)
