"""The ``orbitwin`` application: the command line, the benchmarks, the Python client and the pytest plugin,
above the twin and its bridges. Importing it has no side effects (the CLI sets its BLAS threads itself)."""
