"""dualrnn: the Dual RNN (Oliva & Lago-Fernandez) and the systems it builds on, in Keras 3."""

from dualrnn import configs, data, layers, presets  # noqa: F401
from dualrnn.models import LanguageModel, build_model, count_params  # noqa: F401

__version__ = "0.1.0"
