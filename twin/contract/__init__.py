"""The MQTT contract: topic tree, headers and replies, telemetry encoders, request parsing, the AsyncAPI document.

Pure (no network). Imports :mod:`twin.schema` and :mod:`twin.core`.
"""
