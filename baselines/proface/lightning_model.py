"""Lightning glue of PRO-Face S (Yuan et al., TCSVT 2024): the flow learns to look like the
classic obfuscation while staying recoverable from its 8-bit image."""
from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

from benchmark.api.nn import through_uint8
from benchmark.api.training import adamw_cosine

from .config import ProFaceConfig
from .torch_model import SecureFlow


class SecureFlowModule(L.LightningModule):
    """Per batch of faces x with their classic obfuscation o (``batch["obfuscated"]``, uint8)
    and random pads (a random key's pad has the same distribution):

    - obfuscation: L1 between the protected image *without* the pad and o. The pad is the
      cipher, not part of the imitation; left in, its ``(1 - gain)`` factor would reward a gain
      of 1 (no hiding) wherever the pad is louder than the face's detail;
    - recovery: L1 between the inverse of the 8-bit protected image (rounded as a PNG stores it,
      gradients straight through) and x;
    - range: protected pixels outside [0, 1], which clipping would lose.
    """

    def __init__(self, flow: SecureFlow, cfg: ProFaceConfig):
        super().__init__()
        self.flow, self.cfg = flow, cfg

    def training_step(self, batch, batch_idx):
        cfg, x = self.cfg, batch["image"]
        target = batch["obfuscated"].float() / 255
        pad = torch.rand(len(x), self.flow.pad_size(x), device=x.device) * 2 - 1
        protected, unpadded = self.flow(x, pad, with_unpadded=True)
        recovered = self.flow.inverse(through_uint8(protected), pad)
        terms = {"obfuscation": F.l1_loss(unpadded, target),
                 "recovery": F.l1_loss(recovered, x),
                 "range": (protected - protected.clamp(0, 1)).abs().mean()}
        loss = (cfg.w_obfuscation * terms["obfuscation"] + cfg.w_recovery * terms["recovery"]
                + cfg.w_range * terms["range"])
        with torch.no_grad():
            psnr = -10 * torch.log10(F.mse_loss(recovered.clamp(0, 1), x))
            obf_psnr = -10 * torch.log10(F.mse_loss(protected.clamp(0, 1), target))
        self.log_dict({f"loss/{k}": v.detach() for k, v in terms.items()}, batch_size=len(x))
        self.log_dict({"loss": loss.detach(), "rec_psnr": psnr, "obf_psnr": obf_psnr},
                      prog_bar=True, batch_size=len(x))
        return loss

    def configure_optimizers(self):
        return adamw_cosine(self.parameters(), self.cfg.lr, self.cfg.epochs)
