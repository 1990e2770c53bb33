"""``mema-bench``: one command, three subcommands.

    mema-bench run --method blur                      # score a method (python -m benchmark.run)
    mema-bench anonymize IN --out OUT --method NAME   # de-identify a folder of photos
    mema-bench recover OUT --keys keys.json --out RESTORED

``python -m deploy anonymize ...`` does the same. The benchmark is imported only for ``run``,
so de-identifying photos never loads the evaluators.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .photo import MAX_PIXELS

SUBCOMMANDS = ("run", "anonymize", "recover")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace files that exist in OUT")
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                        help=f"refuse photos above this many pixels, read from the header before "
                        f"decoding (default {MAX_PIXELS:,})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mema-bench", description="Medical-manifestation-aware face de-identification: "
        "score methods (run), apply one to your photos (anonymize), restore them (recover).")
    sub = parser.add_subparsers(dest="command", metavar="{run,anonymize,recover}")
    sub.add_parser("run", add_help=False, help="score a method on MeMa data (python -m benchmark.run; "
                   "mema-bench run --help for its options)")
    anonymize = sub.add_parser(
        "anonymize", help="de-identify every face in a folder of photos",
        description="De-identify every face in the photos under IN and write them, with the same "
        "relative paths and without metadata (EXIF, GPS), under OUT. Faces are found by MTCNN, "
        "aligned to the suite's canonical crop at the method's resolution, de-identified, and "
        "pasted back with a feathered face mask. OUT/report.csv lists every file: faces found, "
        "boxes, method, time, status. A photo without a face is skipped and listed.",
        epilog="Example: mema-bench anonymize photos/ --out shared/ --method blur_keep_eyes")
    anonymize.add_argument("input", type=Path, metavar="IN", help="folder of photos (jpg, png, tif, bmp, webp)")
    anonymize.add_argument("--out", type=Path, required=True, help="output folder (not IN, not inside IN)")
    anonymize.add_argument("--method", required=True, help="registered method name (mema-bench run "
                           "--list-methods) or package.module:Class")
    anonymize.add_argument("--profile", default="quick", help="the profile the method was fitted "
                           "with; sets its crop size (quick: 64 px, full: 128 px; default quick)")
    anonymize.add_argument("--seed", type=int, default=0, help="seed of the cached fit (default 0)")
    anonymize.add_argument("--keys", type=Path, help="key file to write (reversible methods: "
                           "required; keep it private, outside OUT)")
    anonymize.add_argument("--aligned", action="store_true", help="photos are pre-aligned face crops: "
                           "no detection, each whole photo is one face")
    anonymize.add_argument("--min-face", type=int, default=40, metavar="PX",
                           help="smallest face to find, in pixels (default 40)")
    anonymize.add_argument("--no-face", choices=("skip", "copy"), default="skip",
                           help="photos where no face is found: skip them (default) or copy them "
                           "(metadata stripped)")
    anonymize.add_argument("--contact-sheet", type=Path, metavar="PNG",
                           help="also write before/after thumbnails of up to 16 photos to PNG")
    _common(anonymize)
    recover = sub.add_parser(
        "recover", help="restore the faces of photos de-identified by a reversible method",
        description="Restore the faces of the photos under OUT (as written by anonymize) with the "
        "key file written with them, into RESTORED.")
    recover.add_argument("input", type=Path, metavar="OUT", help="folder written by anonymize")
    recover.add_argument("--keys", type=Path, required=True, help="key file written by anonymize")
    recover.add_argument("--out", type=Path, required=True, metavar="RESTORED", help="output folder")
    _common(recover)
    return parser


def _anonymize(args):
    from .folder import Options, anonymize_folder
    from .methods import load_for_photos

    loaded = load_for_photos(args.method, args.profile, args.seed)
    options = Options(args.aligned, args.min_face, args.no_face, args.overwrite, args.max_pixels,
                      not args.quiet)
    summary = anonymize_folder(args.input, args.out, loaded, options, args.keys, args.contact_sheet)
    return summary, summary.line("anonymized") + f"; report: {args.out / 'report.csv'}"


def _recover(args):
    from .folder import Options, recover_folder

    options = Options(overwrite=args.overwrite, max_pixels=args.max_pixels, progress=not args.quiet)
    summary = recover_folder(args.input, args.out, args.keys, options)
    return summary, summary.line("recovered")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run" or argv and argv[0].startswith("--") and argv[0] != "--help":
        # the benchmark's own CLI; a bare `mema-bench --method X` keeps working as before
        from benchmark.run import main as run_main

        return run_main(argv[1:] if argv[0] == "run" else argv)
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 2
    from benchmark.registry import MethodNotFoundError, PluginError
    from benchmark.validation import MethodOutputError

    from .folder import FolderError
    from .keys import KeyFileError
    from .methods import FittedStateNotFoundError
    from .photo import PhotoError

    try:
        summary, line = _anonymize(args) if args.command == "anonymize" else _recover(args)
    except (FolderError, KeyFileError, PhotoError, FittedStateNotFoundError, MethodNotFoundError,
            PluginError, MethodOutputError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(line)
    return 1 if summary.count("error") else 0  # unreadable photos were listed, not written


if __name__ == "__main__":
    raise SystemExit(main())
