"""The definitions everything else derives from: telemetry fields, units and limits; commands and faults; the codec.

The lowest layer: imports nothing of the twin. See docs/architecture.md.
"""
