"""RiDDLE (Li, Wang, Zhao, Dong, Tan, CVPR 2023): reversible and diversified de-identification
with a password-driven latent encryptor over a suite-trained autoencoder, registered as
``riddle`` (``README.md``)."""
