"""``python -m data.synthetic``: generate MeMa-Synth, preview it, print its calibration."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .generator import DEFAULTS, ensure_mema_synth, preview


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data.synthetic",
        description="Generate MeMa-Synth (procedural faces with eye-region diseases) in the MeMa "
        "layout; optionally write a preview grid and print the calibration report.")
    parser.add_argument("--out", type=Path, help="dataset root to create (default: the cache, "
                        "see data.paths.cache_root; an existing set there is reused)")
    parser.add_argument("--identities", type=int, default=DEFAULTS["identities"], help="people (default 400)")
    parser.add_argument("--images-per-identity", type=int, default=DEFAULTS["images_per_identity"],
                        help="images of each person (default 8)")
    parser.add_argument("--size", type=int, default=DEFAULTS["size"], help="image side in px (default 64)")
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="random seed (default 0)")
    parser.add_argument("--persistent-condition", action="store_true",
                        help="a person's condition (and its signs and side) is the same in all their "
                        "photos, as in a clinic; raises the attribute-only re-identification floor "
                        "(data/README.md)")
    parser.add_argument("--preview", type=Path, metavar="PNG", help="write a conditions x identities grid")
    parser.add_argument("--report", action="store_true",
                        help="train small classifiers and print disease accuracy, sign F1 and re-id top-1")
    parser.add_argument("--leakage", action="store_true",
                        help="with --report: also retrain the recogniser on eyes-only and face-masked images")
    args = parser.parse_args(argv)
    root = ensure_mema_synth(args.out, identities=args.identities,
                             images_per_identity=args.images_per_identity, size=args.size, seed=args.seed,
                             persistent_condition=args.persistent_condition)
    print(f"MeMa-Synth at {root}")
    if args.preview:
        print(f"preview written to {preview(args.preview, args.size, args.seed)}")
    if args.report:
        from ..calibration import calibration_report

        calibration_report(root, image_size=args.size, seed=args.seed, leakage=args.leakage)
    return 0


if __name__ == "__main__":
    sys.exit(main())
