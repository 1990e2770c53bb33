"""MeMa-Synth, the embedded default dataset (see ``generator`` and ``data/README.md``)."""
from .generator import (
    CLASSES,
    GENERATOR_VERSION,
    SIGNS,
    default_root,
    ensure_mema_synth,
    generate,
    preview,
    sample_dataset,
)

__all__ = ["CLASSES", "GENERATOR_VERSION", "SIGNS", "default_root", "ensure_mema_synth",
           "generate", "preview", "sample_dataset"]
