"""The ``orbitwin`` command line: each subcommand parses its options and calls one library function."""

import os

# One BLAS thread unless the user says otherwise: the twin's arrays are small per call (thousands of
# satellites x a few columns), where threads cost more than they give, and the second core belongs to
# the orbit worker (twin.core.orbit_pipeline). Measured: the scheduler's tick p99 at dt 1 s over the
# whole fleet is 11.7 ms with one thread against 21 ms with OpenBLAS's default (docs/physics.md#compute-jobs).
# Set here, before numpy is first imported by the command (not in the package: the client and the
# pytest plugin import that and must leave the user's process alone).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from orbitwin.cli.main import main  # noqa: E402  (after the environment is set)

__all__ = ["main"]
