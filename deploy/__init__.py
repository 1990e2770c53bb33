"""De-identify real photos with a benchmarked method: ``mema-bench anonymize`` / ``recover``.

Modules: ``photo`` (reading and writing photos), ``detect`` (MTCNN faces and landmarks),
``align`` (canonical crop, paste back), ``pipeline`` (one photo), ``folder`` (a folder of photos,
report, key file, contact sheet), ``keys`` (the key file), ``methods`` (a method and its cached
fit), ``cli``. See ``deploy/README.md``.
"""
