"""genreshift: convert music from one genre to another."""

import os

# OpenMP threads that spin while waiting made torch 4-25x slower whenever the CPU is shared
# (BENCHMARKS.md); passive waiting costs nothing on an idle machine. A user's setting wins.
# Must happen before torch is imported, which every genreshift module that needs it does later.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
