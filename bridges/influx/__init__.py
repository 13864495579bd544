"""The InfluxDB bridge: MQTT telemetry into InfluxDB exactly once (mapping, writers, spool, dead letters)."""
