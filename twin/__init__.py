"""Orbitwin fleet twin: a vectorised digital twin of a constellation of orbital compute satellites.

The core modules (orbit, eclipse, environment, power, battery, thermal, radiation, payload, fdir)
are pure numpy over satellites in SI units and do no I/O beyond reading files.
"""

__version__ = "0.1.0"
