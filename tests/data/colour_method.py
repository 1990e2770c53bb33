"""A fixed, invertible colour transform posing as a de-identifier (for the attack tests):
channels rotated and inverted. It defeats a recogniser trained on clean faces, and hides
nothing from an attacker who can run it (parrot) or learn to undo it (reversal)."""
from __future__ import annotations

from benchmark.api import DeIdMethod


class ColourSwap(DeIdMethod):
    description = "channels rotated and inverted (invertible; a test fixture)"

    def anonymize(self, batch, keys):
        return 1.0 - batch["image"][:, [2, 0, 1]]
