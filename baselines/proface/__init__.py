"""PRO-Face S (Yuan et al., TCSVT 2024): a keyed invertible flow whose output looks like a
classic obfuscation (blur, pixelation, mask) and from which the key holder recovers the
original, registered as ``proface_blur``, ``proface_pixelate_keep_eyes``, ``proface_mask``
(``README.md``)."""
