"""FIT (Gu, Luo, Malik, Lee, ECCV 2020): password-conditioned anonymisation and deanonymisation
with one face identity transformer, registered as ``fit_reversible`` (``README.md``)."""
