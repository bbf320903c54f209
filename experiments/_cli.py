"""Bootstrap of the scripts: the repository root on sys.path, and ``dualrnn.cli`` (the shared
argument handling). ``import dualrnn`` does not import Keras, so ``set_backend`` still works.
tuning/_cli.py re-exports this file."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from dualrnn.cli import (Parser, add_bound_flags, add_run_flags, bound_command,  # noqa: E402,F401
                         bound_suffix, check_run_flags, check_writable, csv_list, in_range,
                         set_backend)
