"""The MQTT door: every connection to a broker is configured and opened here.

:class:`MqttSettings` says where and how (URL, credentials from arguments, URL, environment or a
file, TLS, protocol, session, reconnect); :class:`MqttConnection` is the connected client with
its lifecycle (will, birth, reconnect with backoff, clear errors). Topic names come from
:mod:`twin.contract.topics`, never from here.
"""

from twin.mqtt.connection import Message, MqttConnectError, MqttConnection, reply_properties
from twin.mqtt.settings import (ENV_PASSWORD, ENV_PASSWORD_FILE, ENV_USERNAME, MqttConfigError, MqttSettings,
                                read_password_file)

__all__ = [
    "ENV_PASSWORD",
    "ENV_PASSWORD_FILE",
    "ENV_USERNAME",
    "Message",
    "MqttConfigError",
    "MqttConnectError",
    "MqttConnection",
    "MqttSettings",
    "read_password_file",
    "reply_properties",
]
