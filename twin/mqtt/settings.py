"""Where and how to reach an MQTT broker: one frozen settings value, built once per component.

The broker is a URL, ``mqtt://host[:port]`` (default port 1883) or ``mqtts://host[:port]`` (TLS,
default port 8883); ``tcp://`` and ``ssl://`` are accepted as synonyms. Credentials may sit in the
URL (``mqtts://user:pass@host``), but a password on the command line is visible to every user of
the machine (``ps``), so :meth:`MqttSettings.from_sources` also reads them from the environment
or a file. Precedence, per field, most explicit first:

1. ``username`` / ``password`` / ``password_file`` arguments (the CLI's ``--mqtt-username``,
   ``--mqtt-password``, ``--mqtt-password-file``);
2. ``user:pass@`` in the URL;
3. ``$ORBITWIN_MQTT_USERNAME``, ``$ORBITWIN_MQTT_PASSWORD`` or ``$ORBITWIN_MQTT_PASSWORD_FILE``.

A password given explicitly (1) without any username is an error; a password from the
environment (3) is used only when some source gives a username.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ENV_USERNAME = "ORBITWIN_MQTT_USERNAME"
ENV_PASSWORD = "ORBITWIN_MQTT_PASSWORD"
ENV_PASSWORD_FILE = "ORBITWIN_MQTT_PASSWORD_FILE"
PROTOCOLS = ("5", "3.1.1")
_PLAIN_SCHEMES = ("mqtt", "tcp")
_TLS_SCHEMES = ("mqtts", "ssl")


class MqttConfigError(ValueError):
    """A broker URL, option or credential that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class MqttSettings:
    """How to connect to one broker.

    ``username``/``password`` override the URL's ``user:pass@``. ``session_expiry_s`` None means
    the component's own default (the twin keeps its session 1 h, the InfluxDB bridge 24 h).
    ``reconnect_min_s``/``reconnect_max_s``: the reconnect delay starts at the minimum and
    doubles after each failed attempt up to the maximum (seconds).
    """

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False
    protocol: str = "5"
    keepalive_s: int = 10
    session_expiry_s: int | None = None
    reconnect_min_s: int = 1
    reconnect_max_s: int = 2

    def __post_init__(self) -> None:
        u = self._split()
        if u.scheme not in _PLAIN_SCHEMES + _TLS_SCHEMES:
            raise MqttConfigError(f"broker URL must start with mqtt:// or mqtts://, got {self.redacted_url!r}")
        if not u.hostname:
            raise MqttConfigError(f"broker URL has no host: {self.redacted_url!r}")
        try:
            u.port  # noqa: B018 - validates the port
        except ValueError:
            raise MqttConfigError(f"bad port in broker URL {self.redacted_url!r}") from None
        if u.path not in ("", "/") or u.query or u.fragment:
            raise MqttConfigError(f"broker URL takes no path or query: {self.redacted_url!r}")
        if self.protocol not in PROTOCOLS:
            raise MqttConfigError(f"MQTT protocol must be 5 or 3.1.1, not {self.protocol!r}")
        if not self.tls and (self.ca_file or self.cert_file or self.key_file or self.insecure):
            raise MqttConfigError("TLS options (CA, client certificate and key, insecure) need an mqtts:// URL")
        if self.key_file and not self.cert_file:
            raise MqttConfigError("a client key needs a client certificate (--mqtt-cert)")
        if self.keepalive_s < 1:
            raise MqttConfigError(f"keepalive must be at least 1 s, not {self.keepalive_s}")
        if self.session_expiry_s is not None and not 0 <= self.session_expiry_s <= 0xFFFFFFFF:
            raise MqttConfigError(f"session expiry must be 0..4294967295 s, not {self.session_expiry_s}")
        if not 1 <= self.reconnect_min_s <= self.reconnect_max_s:
            raise MqttConfigError("reconnect delays must satisfy 1 <= min <= max")
        if self.password is not None and self.credentials[0] is None:
            raise MqttConfigError("an MQTT password needs a username (--mqtt-username or user@ in the URL)")

    @classmethod
    def from_sources(cls, url: str, *, username: str | None = None, password: str | None = None,
                     password_file: str | None = None, environ: Mapping[str, str] | None = None,
                     **options: object) -> MqttSettings:
        """Settings with credentials resolved from arguments, the URL and the environment (see module doc).

        ``options`` are the other fields (``ca_file``, ``protocol``, ``keepalive_s``, ...).
        """
        env = os.environ if environ is None else environ
        if password is not None and password_file:
            raise MqttConfigError("give the MQTT password once: --mqtt-password or --mqtt-password-file")
        url_user, url_password = _url_credentials(url)
        if password_file:
            password = read_password_file(password_file)
        user = username or url_user or env.get(ENV_USERNAME) or None
        if password is None and url_password is None:
            env_file = env.get(ENV_PASSWORD_FILE)
            if env.get(ENV_PASSWORD) is not None and env_file:
                raise MqttConfigError(f"set only one of ${ENV_PASSWORD} and ${ENV_PASSWORD_FILE}")
            env_password = read_password_file(env_file) if env_file else env.get(ENV_PASSWORD)
            if env_password is not None and user is not None:
                password = env_password
        return cls(url, username=user, password=password, **options)  # type: ignore[arg-type]

    @classmethod
    def coerce(cls, value: MqttSettings | str) -> MqttSettings:
        """``value`` itself, or settings for a bare broker URL."""
        return value if isinstance(value, MqttSettings) else cls(value)

    def __repr__(self) -> str:
        shown = [f"url={self.redacted_url!r}"] + [
            f"{name}={getattr(self, name)!r}" for name in self.__dataclass_fields__
            if name not in ("url", "password")] + [f"password={'***' if self.credentials[1] else None}"]
        return f"MqttSettings({', '.join(shown)})"

    def _split(self) -> urllib.parse.SplitResult:
        return urllib.parse.urlsplit(self.url.strip())

    @property
    def host(self) -> str:
        return str(self._split().hostname)

    @property
    def tls(self) -> bool:
        return self._split().scheme in _TLS_SCHEMES

    @property
    def port(self) -> int:
        return self._split().port or (8883 if self.tls else 1883)

    @property
    def v5(self) -> bool:
        return self.protocol == "5"

    @property
    def credentials(self) -> tuple[str | None, str | None]:
        """(username, password): the explicit fields, else the URL's ``user:pass@``."""
        url_user, url_password = _url_credentials(self.url)
        user = self.username if self.username is not None else url_user
        return user, self.password if self.password is not None else url_password

    @property
    def redacted_url(self) -> str:
        """The URL safe to print: ``mqtts://user@host:port`` (never a password)."""
        u = self._split()
        user = self.username if self.username is not None else u.username
        host = u.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        try:
            port = u.port
        except ValueError:
            port = None
        netloc = (f"{urllib.parse.quote(urllib.parse.unquote(user), safe='')}@" if user else "") + host + (
            f":{port}" if port else "")
        return f"{u.scheme}://{netloc}"


def _url_credentials(url: str) -> tuple[str | None, str | None]:
    u = urllib.parse.urlsplit(url.strip())
    user = urllib.parse.unquote(u.username) if u.username else None
    password = urllib.parse.unquote(u.password) if u.password is not None else None
    return user, password


def read_password_file(path: str) -> str:
    """The password in ``path``: the whole file without its trailing newline; empty is an error."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise MqttConfigError(f"cannot read MQTT password file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise MqttConfigError(f"MQTT password file {path} is not UTF-8 text") from None
    password = text.rstrip("\r\n")
    if not password:
        raise MqttConfigError(f"MQTT password file {path} is empty")
    return password
