"""Keras layers of the Dual paper and the systems it builds on (all Keras-serializable).

Every recurrent cell is reached through ``layers.registry`` (``ModelConfig.cell`` names).
"""

from dualrnn.layers import fused  # noqa: F401
from dualrnn.layers.dropout import EmbeddingDropout, LockedDropout
from dualrnn.layers.dual import DualHead
from dualrnn.layers.mogrifier import MogrifierLSTMCell
from dualrnn.layers.output import TiedEmbedding
from dualrnn.layers.scrn import SCRNCell
from dualrnn.layers.weight_drop import (WeightDropGRU, WeightDropGRUCell, WeightDropLSTM,
                                        WeightDropLSTMCell)
from dualrnn.layers import registry  # noqa: F401,E402  (after the cells it registers)

__all__ = ["DualHead", "EmbeddingDropout", "LockedDropout", "MogrifierLSTMCell", "SCRNCell",
           "TiedEmbedding", "WeightDropGRU", "WeightDropGRUCell", "WeightDropLSTM",
           "WeightDropLSTMCell"]
