"""The ``orbitwin`` application: the command line and the benchmarks, above the twin and its bridges."""
