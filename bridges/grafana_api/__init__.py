"""Grafana over its HTTP API (``grafana-client``): install the dashboards into an existing Grafana, post annotations.

``client`` opens the API (credentials from the environment) and turns its failures into one-line
errors; ``objects`` builds the API bodies from the generator's provisioning; ``push`` upserts them
(``orbitwin dashboards push``); ``annotations`` posts the Grafana bridge's actions and replies.
"""
