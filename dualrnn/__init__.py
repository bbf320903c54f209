"""dualrnn: the Dual RNN (Oliva & Lago-Fernandez) and the systems it builds on, in Keras 3.

Importing ``dualrnn`` does not import Keras: submodules (``dualrnn.layers``, ``dualrnn.train``,
...) and the model builders (``build_model``, ``LanguageModel``, ``count_params``) load on first
use, so ``dualrnn.cli`` can set the Keras backend before Keras is imported. When Keras is already
imported, ``dualrnn.layers`` is loaded at once, so that ``keras.saving.load_model`` finds this
library's registered layers after a plain ``import dualrnn``; otherwise import ``dualrnn.layers``
(or build a model) before loading a ``.keras`` file.
"""

import importlib
import sys

__version__ = "0.4.8"

_SUBMODULES = ("allocator", "cache", "checks", "cli", "configs", "data", "dyneval", "evaluate",
               "experiment", "files", "layers", "models", "optimizers", "presets", "results",
               "streaming", "train")
_FROM_MODELS = ("LanguageModel", "build_model", "count_params")
__all__ = list(_SUBMODULES + _FROM_MODELS)


def __getattr__(name):
    if name in _FROM_MODELS:
        return getattr(importlib.import_module("dualrnn.models"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"dualrnn.{name}")
    raise AttributeError(f"module 'dualrnn' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)


if "keras" in sys.modules:       # registering the layers costs little once Keras is loaded
    importlib.import_module("dualrnn.layers")
