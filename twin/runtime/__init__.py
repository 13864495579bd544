"""The shell around the core that owns time and I/O: sim clock pacing, the twin on MQTT, the embedded broker,
scenarios, the hardware-in-the-loop binding and the terminal status table.
"""
