"""Keyed DDIM inversion (after Labarbarie, Itier, Puech, "Secure and reversible face
anonymization with diffusion models", 2025): a diffusers DDPM trained from scratch, the face
inverted deterministically to an intermediate step, its latent mixed with key-seeded noise
inside the face mask and regenerated; the key undoes it. Registered as ``keyed_ddim`` and
``keyed_ddim_keep_eyes``, and our variants ``keyed_ddim_flip`` and
``keyed_ddim_flip_keep_eyes``, whose key also flips the latent's low-frequency patterns
(``README.md``)."""
