"""MedSem-DeID: medical-manifestation-aware, key-reversible face de-identification, after Tian,
Wang, Zhai, "Medical Manifestation-Aware De-Identification", AAAI 2025 (arXiv 2412.10804).

The plugins :class:`~medsem_deid.method.MedSemDeID` and its ablation
:class:`~medsem_deid.method.MedSemDeIDNoPrior` are registered as ``medsem_deid`` and
``medsem_deid_noprior`` in the ``mema_bench.methods`` entry-point group; see ``README.md``.
"""
