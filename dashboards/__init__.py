"""Grafana provisioning generated from the telemetry schema, and the generated files themselves.

``orbitwin dashboards build`` writes ``json/`` and ``provisioning/`` beside this package's modules; the
alert-action rule table ``alert-actions.toml`` ships here too.
"""
