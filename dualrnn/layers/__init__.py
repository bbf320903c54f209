"""Keras layers of the Dual paper and the systems it builds on (all Keras-serializable)."""

from dualrnn.layers import fused  # noqa: F401
from dualrnn.layers.dual import DualHead
from dualrnn.layers.mogrifier import MogrifierLSTMCell
from dualrnn.layers.output import TiedEmbedding

__all__ = ["DualHead", "MogrifierLSTMCell", "TiedEmbedding"]
