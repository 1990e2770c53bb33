"""``python -m data.build [SRC] --out DIR``: re-generate a private MeMa-like dataset from a
source in the MeMa layout (default: MeMa-Synth) with a conditional latent diffusion model, filtered
for memorisation and plausibility. See ``data/builder`` and ``data/README.md``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .builder import PROFILES, build, get_profile
from .builder.build import format_summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data.build",
        description="Train a conditional latent diffusion model (a diffusers AutoencoderKL, then a "
        "UNet2DModel DDPM on its latents, through Lightning) on a MeMa-layout dataset, sample faces under disease/sign conditions with "
        "age and sex drawn from the source, reject memorised and implausible faces, and write "
        "the kept ones in the MeMa layout with build.json (provenance), rejected.csv and "
        "preview.png.",
        epilog="The autoencoder, the generator and the judges are cached under $MEMA_BENCH_CACHE/builder/"
        "<source fingerprint>/ (an interrupted training resumes). Example: "
        "python -m data.build --out /tmp/mema-built")
    parser.add_argument("source", nargs="?", type=Path,
                        help="source dataset root in the MeMa layout (default: MeMa-Synth, "
                        "generated in the cache on first use)")
    parser.add_argument("--out", type=Path, required=True, help="folder to create (must not exist or be empty)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick",
                        help="quick: 64 px, 8x16x16 latent, CPU minutes (default); full: 128 px, 8x32x32 "
                        "latent, GPU sized; toy: seconds")
    parser.add_argument("--per-condition", type=int, help="faces generated per disease class "
                        "before filtering (quick: 250, i.e. 2,000 for eight classes)")
    parser.add_argument("--images-per-identity", type=int, help="photos per generated person (quick: 4)")
    parser.add_argument("--ddim-steps", type=int, help="DDIM sampling steps (quick: 8)")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale (quick: 2; 1 = off)")
    parser.add_argument("--seed", type=int, default=0, help="sampling and split seed (default 0)")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator for training: auto, cpu, gpu")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or phase messages")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("per_condition", "images_per_identity", "ddim_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1 (got {value})", file=sys.stderr)
            return 2
    profile = get_profile(args.profile, per_condition=args.per_condition, guidance=args.guidance,
                          images_per_identity=args.images_per_identity, ddim_steps=args.ddim_steps)
    source = args.source
    if source is None:
        from .synthetic import ensure_mema_synth

        source = ensure_mema_synth(progress=not args.quiet)
    try:
        record = build(source, args.out, profile, seed=args.seed, verbose=not args.quiet,
                       trainer_kwargs={"accelerator": args.accelerator})
    except (FileExistsError, FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_summary(record, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
