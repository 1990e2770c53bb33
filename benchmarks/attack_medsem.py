"""A knowing attacker against a fitted MedSem-DeID (quick check until the harness's attacks land).

    python benchmarks/attack_medsem.py                       # medsem_deid, quick profile, seed 0
    python benchmarks/attack_medsem.py --method medsem_deid_noprior --epochs 8

The attacker (DESIGN.md §4) runs the method on the training split with keys it draws, then:

- reversal: a small U-Net trained on (de-identified, original) training pairs, applied to the
  de-identified test images, re-identified by the harness's identity evaluator (identity
  protocol: first image of each person enrolled clean, the others probed);
- naive, de-identified enrolment: the first de-identified image of each person enrolled, the
  other de-identified images probed (linkage of different photos of one person);
- linkage under two keys: each test image de-identified under two keys, linked to itself
  among all test images (top-1, pair protocol);
- storage: the key holder's recovery after an 8-bit PNG and after JPEG q90 (PSNR, and
  re-identification of the recovered face, identity protocol).

Loads the fitted state ``benchmark.run`` cached (``<cache>/methods/<name>/*.pt``, the newest
unless ``--state`` names one) and the cached evaluators. Prints JSON.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _unet(width: int = 16) -> nn.Module:
    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                             nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            w = width
            self.e1, self.e2, self.e3 = block(3, w), block(w, 2 * w), block(2 * w, 4 * w)
            self.d2, self.d1 = block(6 * w, 2 * w), block(3 * w, w)
            self.out = nn.Conv2d(w, 3, 1)

        def forward(self, x):
            s1 = self.e1(x * 2 - 1)
            s2 = self.e2(F.avg_pool2d(s1, 2))
            h = self.e3(F.avg_pool2d(s2, 2))
            h = self.d2(torch.cat([F.interpolate(h, scale_factor=2.0), s2], 1))
            h = self.d1(torch.cat([F.interpolate(h, scale_factor=2.0), s1], 1))
            return torch.sigmoid(self.out(h))

    return UNet()


def _split(loader) -> dict[str, torch.Tensor]:
    parts: dict[str, list] = {}
    for batch in loader:
        for key in ("image", "identity", "landmarks", "index"):
            if key in batch:
                parts.setdefault(key, []).append(batch[key])
    return {k: torch.cat(v) for k, v in parts.items()}


def _keys(method, n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 2, (n, method.key_bits),
                         generator=torch.Generator().manual_seed(seed)).float()


def _anonymize(method, data, seed: int) -> torch.Tensor:
    keys = _keys(method, len(data["image"]), seed)
    out = []
    for start in range(0, len(keys), 256):
        part = slice(start, start + 256)
        out.append(method.anonymize({"image": data["image"][part],
                                     "landmarks": data["landmarks"][part]}, keys[part]))
    return torch.cat(out)


def _stored(images: torch.Tensor, fmt: str, **options) -> torch.Tensor:
    """``images`` written to and read back from an in-memory image file."""
    from PIL import Image

    from medsem_deid.method import from_uint8, to_uint8

    out = []
    for image in to_uint8(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, fmt, **options)
        out.append(np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")))
    return from_uint8(np.stack(out))


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a, b, reduction="none").mean((1, 2, 3)).clamp_min(1e-10)
    return float((-10 * mse.log10()).mean())


def _embed(evaluators, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([evaluators.identity.embed(images[i:i + 256])
                          for i in range(0, len(images), 256)])


def _top1(gallery: torch.Tensor, gallery_ids: torch.Tensor, probes: torch.Tensor,
          probe_ids: torch.Tensor) -> float:
    sim = F.normalize(probes, dim=1) @ F.normalize(gallery, dim=1).T
    return float((gallery_ids[sim.argmax(1)] == probe_ids).float().mean())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=["medsem_deid", "medsem_deid_noprior"],
                        default="medsem_deid")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=4, help="reversal network epochs")
    parser.add_argument("--state", help="fitted state file (default: the newest one cached by "
                                        "benchmark.run for --method)")
    args = parser.parse_args(argv)

    from benchmark.scoring import enrolment_split
    from benchmark.evaluators import load_evaluators
    from benchmark.profiles import get_profile
    from benchmark.run import prepare_data
    from data.paths import cache_root
    from medsem_deid.method import MedSemDeID, MedSemDeIDNoPrior

    profile = get_profile("quick")
    _, fingerprint, datamodule, seg = prepare_data("mema-synth", None, profile, args.seed)
    evaluators = load_evaluators(datamodule, seg, fingerprint, profile.evaluators).to("cpu")
    cls = MedSemDeIDNoPrior if args.method == "medsem_deid_noprior" else MedSemDeID
    method = cls(seed=args.seed)
    state = args.state or max((cache_root() / "methods" / cls.name).glob("*.pt"),
                              key=lambda p: p.stat().st_mtime, default=None)
    if state is None:
        parser.error(f"no fitted {cls.name} in the cache: run benchmark.run --method {cls.name}")
    method.load_state_dict(torch.load(state, map_location="cpu", weights_only=True))
    train, test = _split(datamodule.train_dataloader()), _split(datamodule.test_dataloader())
    print(f"de-identifying {len(train['image'])} training and {len(test['image'])} test images",
          file=sys.stderr)
    deid_train = _anonymize(method, train, 100 + args.seed)  # the attacker's own keys
    deid_test, deid_test2 = _anonymize(method, test, 1), _anonymize(method, test, 2)

    torch.manual_seed(args.seed)
    reversal = _unet()
    opt = torch.optim.Adam(reversal.parameters(), lr=2e-3)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(len(deid_train))
        for i in range(0, len(order), 32):
            idx = order[i:i + 32]
            loss = F.l1_loss(reversal(deid_train[idx]), train["image"][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"reversal epoch {epoch}: L1 {loss.item():.4f}", file=sys.stderr)
    with torch.no_grad():
        reversed_test = torch.cat([reversal(deid_test[i:i + 256]) for i in range(0, len(deid_test), 256)])

    keys = _keys(method, len(deid_test), 1)  # deid_test's keys
    recovered = {"png": method.recover(_stored(deid_test, "PNG"), keys),
                 "jpeg_q90": method.recover(_stored(deid_test, "JPEG", quality=90), keys)}
    identity = test["identity"]
    enrol, probes = enrolment_split(identity)
    clean = _embed(evaluators, test["image"])
    emb = {"deid": _embed(evaluators, deid_test), "deid2": _embed(evaluators, deid_test2),
           "reversed": _embed(evaluators, reversed_test)}
    rec_emb = {k: _embed(evaluators, v) for k, v in recovered.items()}
    record = {
        "method": args.method, "test_images": len(identity),
        "chance_identity": 1 / len(enrol), "chance_pair": 1 / len(identity),
        "reid_naive_identity": _top1(clean[enrol], identity[enrol], emb["deid"][probes], identity[probes]),
        "reid_reversal_identity": _top1(clean[enrol], identity[enrol], emb["reversed"][probes],
                                        identity[probes]),
        "reversal_psnr": _psnr(reversed_test, test["image"]),
        "reid_clean_identity": _top1(clean[enrol], identity[enrol], clean[probes], identity[probes]),
        **{f"recovery_{k}_psnr": _psnr(v, test["image"]) for k, v in recovered.items()},
        **{f"reid_recovered_{k}_identity": _top1(clean[enrol], identity[enrol], e[probes],
                                                  identity[probes]) for k, e in rec_emb.items()},
        "linkage_photos_identity": _top1(emb["deid"][enrol], identity[enrol], emb["deid"][probes],
                                         identity[probes]),
        "linkage_two_keys_pair": _top1(emb["deid2"], torch.arange(len(identity)), emb["deid"],
                                       torch.arange(len(identity))),
        "reversal_train_s": time.perf_counter() - start,
    }
    json.dump(record, sys.stdout, indent=1)
    print()
    return record


if __name__ == "__main__":
    main()
