"""Keyed DDIM inversion (after Labarbarie, Itier, Puech, "Secure and reversible face
anonymization with diffusion models", 2025): a diffusers DDPM trained from scratch, the face
inverted deterministically to an intermediate step, its latent mixed with key-seeded noise
inside the face mask and regenerated; the key undoes it. Registered as ``keyed_ddim`` and
``keyed_ddim_keep_eyes`` (``README.md``)."""
