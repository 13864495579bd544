"""A private MQTT broker for ``orbitwin run`` and the tests: mosquitto, else in-process amqtt.

:class:`MosquittoProcess` runs a real mosquitto as a child process on a loopback port; every
broker gets its own temp dir holding a generated ``mosquitto.conf``, the persistence database and
the log file; nothing touches a system service.

:func:`start_embedded_broker` prefers mosquitto and falls back to :class:`AmqttBroker`, the
pure-Python ``amqtt`` broker in a thread, when mosquitto is not installed. It listens on the port
asked for (refused when busy), else on the preferred port (``orbitwin run``: 1883, MQTT's own)
when free, else on any free port (``busy_port`` then names the preferred one). amqtt speaks MQTT 3.1.1
only (no session expiry, response topics or no-local), so the twin then connects with
``--mqtt-protocol 3.1.1`` (the broker's ``protocol``): good for a small fleet, not for the full one.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = [
    "BrokerError",
    "DEFAULT_MQTT_PORT",
    "MosquittoProcess",
    "PortBusyError",
    "check_port",
    "port_is_free",
    "port_note",
    "find_mosquitto",
    "free_port",
    "start_embedded_broker",
    "wait_for_port",
]

_SEARCH_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")
INSTALL_HINT = "install mosquitto (Debian/Ubuntu: apt-get install mosquitto; macOS: brew install mosquitto)"


DEFAULT_MQTT_PORT = 1883


class BrokerError(RuntimeError):
    """The broker binary is missing or the process failed to come up."""


class PortBusyError(BrokerError, ValueError):
    """The port asked for is taken (a ValueError: the user can fix it by choosing another)."""


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary: $MOSQUITTO_BIN, then $PATH, then usual sbin dirs."""
    env = os.environ.get("MOSQUITTO_BIN")
    if env and os.access(env, os.X_OK):
        return env
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in _SEARCH_PATHS if os.access(p, os.X_OK)), None)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """True when a listener could bind ``host:port`` now (as a broker does: with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Poll until ``host:port`` accepts TCP connections; False on timeout or if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class ChildServer:
    """A server child process (``self.proc``) that stops with a signal and a deadline.

    Subclasses set ``dir`` (their working directory, removed by :meth:`cleanup` when
    ``_own_dir``), ``log_path`` and implement :meth:`start`.
    """

    proc: subprocess.Popen[bytes] | None = None
    dir: Path
    log_path: Path
    _own_dir: bool = False
    stop_timeout_s: float = 10.0

    def stop(self, sig: int = signal.SIGTERM, timeout: float | None = None) -> int | None:
        """Send ``sig`` and wait for exit (SIGKILL after ``timeout``); returns the exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(self.stop_timeout_s if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def kill(self) -> int | None:
        """Hard kill (SIGKILL): whatever the server had not made durable is lost."""
        return self.stop(signal.SIGKILL)

    def start(self) -> Self:
        raise NotImplementedError

    def log_tail(self, n: int = 40) -> str:
        """Last ``n`` lines of the server's log (empty if none yet)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def cleanup(self) -> None:
        """Stop the server and remove its temp dir if we created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()


class MosquittoProcess(ChildServer):
    """A mosquitto child process with a generated config in its own temp dir.

    ``restart()`` keeps port and persistence dir, so persistent sessions and
    queued QoS>0 messages survive a graceful stop (SIGTERM writes the database;
    after SIGKILL only the last ``autosave_interval`` snapshot survives).
    """

    kind = "mosquitto"
    busy_port: int | None = None  # the preferred port that was taken (start_embedded_broker)

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        binary: str | None = None,
        workdir: str | os.PathLike[str] | None = None,
        password_file: str | os.PathLike[str] | None = None,
        persistence: bool = True,
        autosave_interval: int = 1,
        max_queued_messages: int = 1_000_000,
        max_inflight_messages: int = 100,
        message_size_limit: int = 0,
        extra_config: str = "",
        start_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port or 0
        self._fixed_port = port is not None
        self.binary = binary or find_mosquitto()
        self.password_file = Path(password_file) if password_file else None
        self.persistence = persistence
        self.autosave_interval = autosave_interval
        self.max_queued_messages = max_queued_messages
        self.max_inflight_messages = max_inflight_messages
        self.message_size_limit = message_size_limit
        self.extra_config = extra_config
        self.start_timeout = start_timeout
        self._own_dir = workdir is None
        self.dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="orbitwin-mosquitto-"))
        self.config_path = self.dir / "mosquitto.conf"
        self.log_path = self.dir / "mosquitto.log"
        self.persistence_dir = self.dir / "persist"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def render_config(self) -> str:
        """The mosquitto.conf text for the current settings."""
        lines = [
            "per_listener_settings false",
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'false' if self.password_file else 'true'}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.persistence_dir}/",
            f"autosave_interval {self.autosave_interval}",
            f"max_queued_messages {self.max_queued_messages}",
            f"max_inflight_messages {self.max_inflight_messages}",
            f"message_size_limit {self.message_size_limit}",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
        ]
        if self.password_file:
            lines.append(f"password_file {self.password_file}")
        if os.name == "posix" and os.geteuid() == 0:
            lines.append(f"user {getpass.getuser()}")  # no privilege drop: temp dir stays writable
        if self.extra_config:
            lines.append(self.extra_config.strip())
        return "\n".join(lines) + "\n"

    def start(self) -> MosquittoProcess:
        """Write the config, spawn mosquitto and wait until the port accepts connections."""
        if self.running:
            return self
        if not self.binary:
            raise BrokerError(f"mosquitto binary not found; {INSTALL_HINT}")
        self.persistence_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self._fixed_port or self.port else 5
        for attempt in range(attempts):
            if not self._fixed_port and (attempt or not self.port):
                self.port = free_port(self.host)
            if self._spawn():
                return self
        raise BrokerError(f"mosquitto did not accept connections on {self.url}:\n{self.log_tail()}")

    def _spawn(self) -> bool:
        if not self.binary:
            raise BrokerError("mosquitto not found")
        self.config_path.write_text(self.render_config())
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.dir,
            start_new_session=True,
        )
        if wait_for_port(self.host, self.port, self.start_timeout, self.proc):
            self.startup_seconds = time.monotonic() - t0
            return True
        self.kill()
        return False

    def restart(self, sig: int = signal.SIGTERM) -> MosquittoProcess:
        """Stop with ``sig`` and start again on the same port with the same persistence dir."""
        self.stop(sig)
        self._fixed_port = True
        return self.start()

    def __repr__(self) -> str:
        return f"MosquittoProcess(url={self.url!r}, running={self.running})"


class AmqttBroker:
    """An in-process MQTT 3.1.1 broker (amqtt) in its own thread: the fallback without mosquitto.

    It speaks MQTT 3.1.1 only and handles a few thousand messages per second: enough for a
    small fleet; install mosquitto for the whole constellation.
    """

    kind = "amqtt, in-process, MQTT 3.1.1"
    protocol = "3.1.1"
    busy_port: int | None = None  # the preferred port that was taken (start_embedded_broker)

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self._loop: Any = None
        self._broker: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> AmqttBroker:
        import asyncio
        import logging

        from amqtt.broker import Broker

        logging.getLogger("amqtt").setLevel(logging.ERROR)
        cfg = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._broker = Broker(cfg, loop=self._loop)
                self._loop.run_until_complete(self._broker.start())
            except BaseException as exc:  # surfaced to the caller below
                errors.append(exc)
                started.set()
                return
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="orbitwin-amqtt", daemon=True)
        self._thread.start()
        started.wait(timeout)
        if errors or not wait_for_port(self.host, self.port, timeout):
            raise BrokerError(f"amqtt broker failed to start: {errors[0] if errors else 'no listener'}")
        return self

    def stop(self) -> None:
        import asyncio

        if self._loop is None or self._broker is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            fut.result(5)
        except Exception:  # noqa: BLE001 - best effort on shutdown
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    cleanup = stop


def start_embedded_broker(port: int | None = None, *, preferred: int | None = None, host: str = "127.0.0.1",
                          **kwargs: object) -> MosquittoProcess | AmqttBroker:
    """Start a private MQTT broker on ``host``: a mosquitto child process, else in-process amqtt (MQTT 3.1.1).

    ``port`` > 0: that port (:class:`PortBusyError` when taken); 0, or None without ``preferred``: any
    free port; None with ``preferred``: that port when free, else any free port, the broker's
    ``busy_port`` then saying which was taken (:func:`port_note`).
    """
    if port is not None and not 0 <= port <= 65535:
        raise ValueError(f"broker port {port} is outside 0..65535")
    busy = None
    if port:
        check_port(host, port)
    elif port is None and preferred:
        if port_is_free(host, preferred):
            try:
                return _start(preferred, host, kwargs)
            except BrokerError:  # taken between the check and the bind
                pass
        busy = preferred
    broker = _start(None, host, kwargs)
    broker.busy_port = busy
    return broker


def check_port(host: str, port: int) -> None:
    """:class:`PortBusyError` naming ``host:port`` when a broker could not listen there now."""
    if not port_is_free(host, port):
        raise PortBusyError(f"port {port} on {host} is busy: the embedded broker cannot listen there "
                            f"(choose another port, or 0 for any free one)")


def _start(port: int | None, host: str, kwargs: dict[str, object]) -> MosquittoProcess | AmqttBroker:
    if find_mosquitto() is not None:
        broker = MosquittoProcess(port, host=host, **kwargs)  # type: ignore[arg-type]
        try:
            return broker.start()
        except BrokerError:
            broker.cleanup()
            raise
    try:
        import amqtt  # noqa: F401
    except ImportError:
        raise BrokerError(f"no MQTT broker available: mosquitto not found ({INSTALL_HINT}) and amqtt not installed") from None
    return AmqttBroker(port, host).start()


def port_note(broker: MosquittoProcess | AmqttBroker) -> str | None:
    """The line saying the preferred port was busy and where the broker listens instead (None when not)."""
    if broker.busy_port is None:
        return None
    return f"port {broker.busy_port} is busy; the embedded broker listens on {broker.port}"
