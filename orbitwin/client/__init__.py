"""A Python client of a running twin over MQTT: requests with their replies, telemetry and events.

:class:`OrbitwinClient` (:mod:`orbitwin.client.client`) connects through the MQTT door
(:mod:`twin.mqtt`); topics and payloads come from the contract (:mod:`twin.contract`).
"""

from orbitwin.client.client import OrbitwinClient
from orbitwin.client.errors import ReplyTimeout, RequestRejected
from orbitwin.client.pending import PendingRequest
from orbitwin.client.streams import EventStream, Sample, TelemetryStream

__all__ = ["EventStream", "OrbitwinClient", "PendingRequest", "ReplyTimeout", "RequestRejected", "Sample",
           "TelemetryStream"]
