"""DeepPrivacy2 (Hukkelås & Lindseth, WACV 2023) as a mema-bench method plugin."""
from .method import DeepPrivacy2, DeepPrivacy2KeepEyes

__all__ = ["DeepPrivacy2", "DeepPrivacy2KeepEyes"]
