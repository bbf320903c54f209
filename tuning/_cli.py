"""Bootstrap of the tuning scripts: the repository root on sys.path and ``dualrnn.cli``'s names
(``import dualrnn`` does not import Keras, so ``set_backend`` still works)."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from dualrnn.cli import (Parser, add_run_flags, check_run_flags, check_writable,  # noqa: E402,F401
                         csv_list, in_range, set_backend)
