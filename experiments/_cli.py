"""Bootstrap of the scripts: repository root on sys.path, and ``dualrnn/cli.py`` loaded by path.

Loading it by path skips ``dualrnn/__init__`` (which imports Keras), so ``set_backend`` still
works. tuning/_cli.py loads this file.
"""

import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
_spec = importlib.util.spec_from_file_location("_dualrnn_cli", os.path.join(ROOT, "dualrnn", "cli.py"))
_cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cli)
Parser, check_writable, csv_list, in_range, set_backend = (
    _cli.Parser, _cli.check_writable, _cli.csv_list, _cli.in_range, _cli.set_backend)
add_run_flags, check_run_flags = _cli.add_run_flags, _cli.check_run_flags
