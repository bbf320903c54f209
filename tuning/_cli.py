"""Bootstrap of the tuning scripts: ``experiments/_cli.py``, loaded by path and re-exported
(repository root on sys.path, ``dualrnn/cli.py`` loaded without importing Keras)."""

import importlib.util
import os

_path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments",
                     "_cli.py")
_spec = importlib.util.spec_from_file_location("_experiments_cli", _path)
_boot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_boot)
globals().update({k: v for k, v in vars(_boot).items() if not k.startswith("__")})
