"""The MeMa builder: a private, plausible patient-face dataset re-generated from photos in the
MeMa layout with a conditional diffusion model, filtered for memorisation and plausibility
(``data/README.md``, "Building a MeMa-like set"). CLI: ``python -m data.build``."""
from .build import REASONS, build
from .profiles import PROFILES, BuildProfile, get_profile

__all__ = ["PROFILES", "REASONS", "BuildProfile", "build", "get_profile"]
