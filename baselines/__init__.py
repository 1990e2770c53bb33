"""Prior de-identification methods, each a plugin of the ``mema_bench.methods`` entry-point group.

- :mod:`baselines.classic`: ``identity`` (no-op reference), ``blur``, ``pixelate``, ``mask`` and
  their ``*_keep_eyes`` variants (Newton, Sweeney & Malin, TKDE 2005);
- :mod:`baselines.ksame`: ``ksame_select``, k-Same-Pixel within the disease class
  (Gross, Airoldi, Malin & Sweeney, PET 2005);
- :mod:`baselines.fit`: ``fit_reversible``, a 16-bit-password-conditioned face identity
  transformer, recovered with the complement password (Gu, Luo, Malik & Lee, ECCV 2020);
- :mod:`baselines.proface`: ``proface_blur``, ``proface_pixelate_keep_eyes``, ``proface_mask``,
  a keyed invertible flow whose output looks like the classic obfuscation and which the 64-bit
  key undoes (PRO-Face S, Yuan et al., TCSVT 2024);
- :mod:`baselines.ciagan`: ``ciagan`` and ``ciagan_keep_eyes``, the head inpainted as a drawn
  target identity (Maximov, Elezi & Leal-Taixé, CVPR 2020);
- :mod:`baselines.deepprivacy2`: ``deepprivacy2`` and ``deepprivacy2_keep_eyes``, the head
  inpainted by a U-Net GAN from its surroundings (Hukkelås & Lindseth, WACV 2023);
- :mod:`baselines.riddle`: ``riddle``, a password-driven latent encryptor over a suite-trained
  autoencoder, recovered from the de-identified image (Li et al., CVPR 2023);
- what the two GANs share (region, composite, U-Net, critic, losses, training loop, plugin
  base) is in the training kit, :mod:`benchmark.api.inpainting` (MedSem-DeID uses it too).

Nothing is imported here: the harness loads each class through its entry point.
"""
