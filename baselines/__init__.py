"""Prior de-identification methods, each a plugin of the ``mema_bench.methods`` entry-point group.

- :mod:`baselines.classic`: ``identity`` (no-op reference), ``blur``, ``pixelate``, ``mask`` and
  their ``*_keep_eyes`` variants (Newton, Sweeney & Malin, TKDE 2005);
- :mod:`baselines.ksame`: ``ksame_select``, k-Same-Pixel within the disease class
  (Gross, Airoldi, Malin & Sweeney, PET 2005);
- :mod:`baselines.fit`: ``fit_reversible``, a 16-bit-password-conditioned face identity
  transformer, recovered with the complement password (Gu, Luo, Malik & Lee, ECCV 2020).

Nothing is imported here: the harness loads each class through its entry point.
"""
