"""Alerts act on the constellation: Grafana webhooks or an InfluxDB poller, through one rule table, into twin commands."""
