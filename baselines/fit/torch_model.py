"""Networks of FIT (Gu, Luo, Malik, Lee, "Password-conditioned Anonymization and Deanonymization
with Face Identity Transformers", ECCV 2020): the password-conditioned face identity transformer,
the LSGAN patch critic and the training-time recogniser.

The paper's transformer is one generator ``G(image, password)``: ``G(x, p)`` anonymises,
``G(G(x, p), ~p)`` recovers (``~p``: the bitwise complement, the authors' inverse password),
and any other password gives another face; the network *learns* that the complement undoes
``p``. Ours keeps that contract but builds it in: ``G`` is a stack of additive coupling steps
(NICE, Dinh et al. 2015) on the 2x2-squeezed image, each step's shift computed from the other
checkerboard half and the password. A password is read as a sign vector ``s = 2p - 1``; its
first sign picks the direction and the rest, multiplied by it, the code ``c``, so ``p`` and
``~p`` share ``c`` and run the same steps in opposite directions: ``G(., ~p)`` is exactly the
inverse of ``G(., p)``. What remains to learn is a face transform per password that hides the
identity and survives 8-bit storage (``lightning_model.py``).

``keyed_flip`` (our choice, the ``fit_keyed_flip`` variant): between the first half ``A`` and
the second half ``B`` of the steps sits a keyed step that nothing learns, ``K_c``: in each
colour's 2x2 Haar basis the three detail coefficients are negated where the code says so (an
orthogonal involution). Why: a wrong password ``k`` of the inverse direction runs
``A_k^-1 K_k B_k^-1`` on ``y = B_p K_p A_p x``. Where the learned steps depend little on the
code (``A_k ~ A_p``, ``B_k ~ B_p``) that is ``A^-1 K_k K_p A x``: without ``K`` it is ``x`` (the
wrong password recovers the face), with it the first half's inverse of a flip of the details
where the two codes differ. Training (the recogniser push on wrong recoveries) then teaches the
first half to put identity where a flip destroys it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.api.nn import conv_norm_act

#: 2x2 squeeze channels (colour c, sub-pixel k = 2 dy + dx -> 4c + k) of the two checkerboard
#: halves: sub-pixels (0,0),(1,1) and (0,1),(1,0) of every colour
_HALVES = (torch.tensor([4 * c + k for c in range(3) for k in (0, 3)]),
           torch.tensor([4 * c + k for c in range(3) for k in (1, 2)]))
#: the orthonormal 2x2 Haar transform of a colour's four sub-pixels (rows: LL, LH, HL, HH);
#: symmetric, so it is its own inverse
_HAAR = torch.tensor([[1., 1., 1., 1.], [1., 1., -1., -1.], [1., -1., 1., -1.],
                      [1., -1., -1., 1.]]) / 2
#: code signs the keyed step reads: one per detail coefficient of each colour
KEYED_SIGNS = 9


def keyed_flip(z: Tensor, code: Tensor) -> Tensor:
    """``K_c``: negate each colour's Haar detail coefficients (of the 2x2-squeezed ``z``
    ``[B, 12, h, w]``) whose sign in ``code[:, :9]`` is -1; an orthogonal involution."""
    b, _, h, w = z.shape
    haar = _HAAR.to(z)
    signs = torch.cat([torch.ones_like(code[:, :3, None]), code[:, :KEYED_SIGNS].view(b, 3, 3)],
                      2)  # [B, colour, LL/LH/HL/HH]
    coeffs = torch.einsum("ij,bcjhw->bcihw", haar, z.view(b, 3, 4, h, w)) * signs[..., None, None]
    return torch.einsum("ij,bcjhw->bcihw", haar, coeffs).reshape(b, 12, h, w)


def password_code(passwords: Tensor) -> tuple[Tensor, Tensor]:
    """``{0,1}`` passwords ``[B, bits]`` -> (direction ``[B]`` in {+1,-1}, code ``[B, bits-1]``
    in {+1,-1}). A password and its complement have opposite directions and the same code."""
    signs = passwords.float() * 2 - 1
    direction = signs[:, 0]
    return direction, (signs * direction[:, None])[:, 1:]


class CouplingShift(nn.Module):
    """The shift of one coupling step: a small U-Net on the conditioning half (1/2 and 1/4 of
    the image size) with the password code as a per-channel bias after the first convolution
    (what 16 constant input channels give a 3x3 convolution, bar its zero-padded border) and a
    global-context bias at 1/4 (skin and hair colour are global identity cues)."""

    def __init__(self, channels: int, code_dim: int, width: int):
        super().__init__()
        w = width
        self.stem = conv_norm_act(channels, w, norm="group", act="silu")
        self.password = nn.Linear(code_dim, w)
        self.down = nn.Sequential(conv_norm_act(w, 2 * w, stride=2, norm="group", act="silu"),
                                  conv_norm_act(2 * w, 2 * w, norm="group", act="silu"))
        self.context = nn.Linear(2 * w, 2 * w)
        self.out = nn.Conv2d(3 * w, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # every step starts as the identity map
        nn.init.zeros_(self.out.bias)

    def forward(self, half: Tensor, code: Tensor) -> Tensor:
        h = self.stem(half) + self.password(code)[:, :, None, None]
        low = self.down(h)
        low = low + self.context(low.mean((2, 3)))[:, :, None, None]
        up = F.interpolate(low, size=h.shape[-2:], mode="nearest")
        return self.out(torch.cat([h, up], 1))


class PasswordTransformer(nn.Module):
    """FIT's face identity transformer ``G(images, passwords)``, exactly inverted by the
    complement password (module docstring). Images ``[B,3,H,W]`` (H, W even), passwords
    ``{0,1}`` ``[B, bits]``; the output is not clipped (the caller clips; training keeps it in
    range)."""

    def __init__(self, password_bits: int = 16, couplings: int = 4, width: int = 32,
                 keyed_flip: bool = False):
        super().__init__()
        self.keyed_flip = keyed_flip
        if keyed_flip and password_bits - 1 < KEYED_SIGNS:
            raise ValueError(f"the keyed flip needs passwords of at least {KEYED_SIGNS + 1} bits, "
                             f"got {password_bits}")
        self.password_bits = password_bits
        self.steps = nn.ModuleList(CouplingShift(6, password_bits - 1, width)
                                   for _ in range(couplings))

    def forward(self, images: Tensor, passwords: Tensor) -> Tensor:
        if passwords.shape != (images.shape[0], self.password_bits):
            raise ValueError(f"passwords must be [{images.shape[0]}, {self.password_bits}], "
                             f"got {tuple(passwords.shape)}")
        direction, code = password_code(passwords)
        z = F.pixel_unshuffle(images, 2)
        out = torch.empty_like(z)
        for sign in (1.0, -1.0):  # each direction on its own sub-batch
            chosen = direction == sign
            if chosen.any():
                out[chosen] = self._flow(z[chosen], code[chosen], inverse=sign < 0)
        return F.pixel_shuffle(out, 2)

    def _flow(self, z: Tensor, code: Tensor, inverse: bool) -> Tensor:
        order = range(len(self.steps))
        middle = len(self.steps) // 2 if self.keyed_flip else None  # the keyed step's place
        for i in (reversed(order) if inverse else order):
            if i == middle and not inverse:
                z = keyed_flip(z, code)
            moved, fixed = _HALVES[i % 2].to(z.device), _HALVES[1 - i % 2].to(z.device)
            shift = self.steps[i](z[:, fixed], code)
            z = z.index_add(1, moved, -shift if inverse else shift)
            if i == middle and inverse:
                z = keyed_flip(z, code)
        return z
