"""An example mema-bench plugin: two complete de-identification methods (see docs/plugins.md)."""
from mema_bench_example_plugin.methods import FaceNoise, KeyedScramble

__all__ = ["FaceNoise", "KeyedScramble"]
