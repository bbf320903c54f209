"""keras-tuner searches over the Dual paper's appendix grid: space.py, tuners.py, search.py, export.py."""
