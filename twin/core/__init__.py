"""The numerical core: every model of every satellite as numpy arrays in SI units, and the engine that steps them.

Arrays in, arrays and events out. No wall clock, no network, no MQTT: imports only :mod:`twin.schema`.
"""
