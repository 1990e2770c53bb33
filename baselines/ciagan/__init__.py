"""CIAGAN (Maximov et al., CVPR 2020) as a mema-bench method plugin."""
from .method import Ciagan, CiaganKeepEyes

__all__ = ["Ciagan", "CiaganKeepEyes"]
