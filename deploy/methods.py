"""Load a de-identification method for photos: by name through the registry, fitted state
from the method cache that ``python -m benchmark.run`` fills (never through the evaluators)."""
from __future__ import annotations

from dataclasses import dataclass

from benchmark import method_cache
from benchmark.api import DeIdMethod
from benchmark.profiles import Profile, get_profile
from benchmark.registry import load_method
from data.paths import cache_root


class FittedStateNotFoundError(LookupError):
    """A learned method has no fitted state in the cache."""


def needs_fit(method: DeIdMethod) -> bool:
    return type(method).fit is not DeIdMethod.fit


@dataclass(frozen=True)
class PhotoMethod:
    """A method ready for photos, and what a key file must record to recover with it."""

    method: DeIdMethod
    crop_size: int
    profile: str
    seed: int
    #: file name of the fitted state loaded from the cache (None: the method does not learn)
    fit: str | None = None

    def header(self) -> dict:
        """What must match between anonymize and recover (written into the key file)."""
        return {"method": self.method.name, "config": self.method.config(), "profile": self.profile,
                "seed": self.seed, "crop_size": self.crop_size, "key_bits": self.method.key_bits,
                "fit": self.fit}


def load_for_photos(name: str, profile_name: str = "quick", seed: int = 0) -> PhotoMethod:
    """The method ``name`` built for ``profile_name``; a learned method gets its fitted state."""
    profile = get_profile(profile_name)
    method = load_method(name, profile=profile.method_profile, seed=seed)
    path = None
    if needs_fit(method):
        path = method_cache.newest_fitted_state_path(method.name, profile, seed,
                                                     method.config())
        if path is None:
            raise FittedStateNotFoundError(
                f"method {method.name!r} learns from data and has no fitted state for profile "
                f"{profile.name!r}, seed {seed} in {cache_root() / 'methods'}. Fit it once on "
                f"your own data: python -m benchmark.run --method {name} --dataset mema "
                f"--data-root DIR --profile {profile.name} --seed {seed}  "
                "(DIR in the MeMa layout; python -m data.prepare imports a class-folder tree)")
        # loaded as data, never code (weights_only); a corrupt file names the refit flag
        method.load_state_dict(method_cache.load_fitted_state(path))
    return PhotoMethod(method, profile.image_size, profile.name, seed, path.name if path else None)
