"""The ``orbitwin`` application: the command line and the benchmarks, above the twin and its bridges."""

import os

# One BLAS thread unless the user says otherwise: the twin's arrays are small per call (thousands of
# satellites x a few columns), where threads cost more than they give, and the second core belongs to
# the orbit worker (twin.core.orbit_pipeline). Measured: the scheduler's tick p99 at dt 1 s over the
# whole fleet is 11.7 ms with one thread against 21 ms with OpenBLAS's default (docs/physics.md#compute-jobs).
# Set before numpy is first imported (the CLI imports this package first).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
