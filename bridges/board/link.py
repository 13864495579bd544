"""Host-side link to one Orbitwin board (real or firmware-sim) over a serial port.

SerialLink opens ``serial.serial_for_url(url, baudrate, timeout)`` (a device
path, ``rfc2217://host:port``, or a firmware-sim symlink), performs the HELLO
handshake and a time sync, then delivers telemetry/heartbeats to a callback
and a queue.  Commands and faults wait for their ACK with timeout and retries
(the board de-duplicates retries by sequence number).  A reader thread
re-opens the port after unplug/replug; a supervisor thread re-handshakes and
flags board silence.  The protocol itself lives in ``orbitwin_fw.messages``.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable

import serial

from orbitwin_fw import messages as m
from orbitwin_fw.framing import Frame, FrameDecoder, encode_frame
from bridges.board.link_commands import BoardCommands
from bridges.board.link_types import (Ack, LinkDown, LinkError, LinkTimeout, Message, PortUnavailable, TimeSync,
                                      _Waiter, open_failure, put_drop_oldest, safe_call, strings)

__all__ = ["SerialLink", "Message", "Ack", "TimeSync", "LinkError", "LinkDown", "LinkTimeout", "PortUnavailable"]

_ERROR_STAT = {m.E_COBS: "garbage", m.E_SHORT: "garbage", m.E_VERSION: "garbage",
               m.E_TYPE: "garbage", m.E_LENGTH: "garbage", m.E_CRC: "crc_errors",
               m.E_OVERSIZE: "oversize"}
_REPLY_TYPES = (m.ACK, m.TIME_SYNC_REPLY)


class SerialLink(BoardCommands):
    """Thread-based link to one board.  Use start()/stop() or a ``with`` block."""

    def __init__(self, url: str, baudrate: int = 115200, *,
                 on_message: Callable[[Message], Any] | None = None,
                 on_event: Callable[[str, dict], Any] | None = None,
                 silence_ms: float = 1000.0, ack_timeout_s: float = 0.25, retries: int = 3,
                 reconnect_interval_s: float = 0.1, reconnect_max_s: float = 1.0, read_timeout_s: float = 0.01,
                 time_sync_interval_s: float = 10.0, sim_time: Callable[[], float] = time.time,
                 queue_size: int = 1000, open_fn: Callable[..., Any] = serial.serial_for_url) -> None:
        self.url = url
        self.baudrate = baudrate
        self.on_message = on_message
        self.on_event = on_event
        self.silence_ms = silence_ms
        self.ack_timeout_s = ack_timeout_s
        self.retries = retries
        self.reconnect_interval_s = reconnect_interval_s  # first wait after a failed open, doubling up to reconnect_max_s
        self.reconnect_max_s = max(reconnect_max_s, reconnect_interval_s)
        self.open_error = ""  # why the last open failed ("" while the port is open)
        self.open_failures = 0  # failed opens in a row
        self.read_timeout_s = read_timeout_s
        self.time_sync_interval_s = time_sync_interval_s
        self.sim_time = sim_time
        self.queue: queue.Queue[Message] = queue.Queue(queue_size)
        self._open_fn = open_fn
        self._ser: Any = None
        self._wlock = threading.Lock()
        self._lock = threading.Lock()
        self._decoder = FrameDecoder()
        self._seq = 0
        self._replies: dict[tuple[int, int], _Waiter] = {}
        self._waiters: list[_Waiter] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._connected = threading.Event()
        self._need_handshake = False
        self._ever_connected = False
        self._silent = False
        self._opened_at = 0.0
        self._last_hb = 0.0
        self._last_sync = 0.0
        self._last_uptime: int | None = None
        self._boot_count: int | None = None
        self.state = "stopped"
        self.capabilities: dict | None = None
        self.telemetry: dict | None = None
        self.heartbeat: dict | None = None
        self.time_sync_result: TimeSync | None = None
        self.stats: dict[str, int] = dict.fromkeys((
            "frames_rx", "frames_tx", "bytes_rx", "crc_errors", "garbage", "oversize",
            "timeouts", "retries", "opens", "reconnects", "board_resets", "silences",
            "board_errors", "board_rx_errors", "unexpected", "callback_errors",
            "queue_dropped"), 0)
        self.errors_by_code: dict[str, int] = {}
        self._threads: list[threading.Thread] = []

    # ---- lifecycle ------------------------------------------------------------
    def start(self) -> "SerialLink":
        """Start the reader and supervisor threads (returns immediately)."""
        self._stop.clear()
        self.state = "disconnected"
        self._threads = [threading.Thread(target=self._io_loop, name="serial-io", daemon=True),
                         threading.Thread(target=self._supervise, name="serial-sup", daemon=True)]
        for t in self._threads:
            t.start()
        return self

    def open_port(self) -> None:
        """Open the port now, in this thread (before :meth:`start`): :class:`PortUnavailable` says why it cannot."""
        if self._ser is None and not self._try_open():
            raise PortUnavailable(self.url, self.open_error)

    @property
    def retry_delay_s(self) -> float:
        """Seconds until the next attempt to open a port that failed to open (doubling, capped)."""
        return min(self.reconnect_interval_s * 2.0 ** max(self.open_failures - 1, 0), self.reconnect_max_s)

    def stop(self) -> None:
        """Stop threads and close the port.  Safe to call twice."""
        self._stop.set()
        self._wake.set()
        self._drop_port(None, event=False)      # also releases pending requests
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(2.0)
        self._drop_port(None, event=False)      # in case the reader re-opened meanwhile
        self.state = "stopped"

    def __enter__(self) -> "SerialLink":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def port_open(self) -> bool:
        """The port is open (the board may not have answered yet: see :attr:`connected`)."""
        return self._ser is not None

    @property
    def silent(self) -> bool:
        """Port open but no heartbeat for silence_ms (or the port is closed)."""
        if self._ser is None:
            return True
        ref = max(self._last_hb, self._opened_at)
        return (time.monotonic() - ref) * 1000.0 > self.silence_ms

    def wait_connected(self, timeout: float) -> bool:
        """Block until the handshake has completed (True) or timeout (False)."""
        return self._connected.wait(timeout)

    def wait_message(self, pred: Callable[[Message], bool], timeout: float) -> Message | None:
        """Wait for the next received message satisfying pred; None on timeout."""
        w = _Waiter(pred)
        with self._lock:
            self._waiters.append(w)
        try:
            w.event.wait(timeout)
            return w.msg
        finally:
            with self._lock:
                self._waiters.remove(w)

    def wait_telemetry(self, pred: Callable[[dict], bool], timeout: float) -> dict | None:
        """Wait for PAYLOAD_TELEMETRY whose fields satisfy pred."""
        msg = self.wait_message(lambda x: x.mtype == m.PAYLOAD_TELEMETRY and pred(x.fields), timeout)
        return msg.fields if msg else None

    # ---- requests ---------------------------------------------------------------
    def command(self, code: int, value: float = 0.0, *, timeout: float | None = None,
                retries: int | None = None) -> Ack:
        """Send COMMAND and wait for its ACK (retries reuse the same seq)."""
        return self._acked(m.COMMAND, {"code": code, "value": value}, timeout, retries)

    def inject_fault(self, kind: int, arg: int = 0, flags: int = 0, *,
                     timeout: float | None = None) -> Ack:
        """Send FAULT (SEU / LATCHUP / HANG) and wait for its ACK."""
        return self._acked(m.FAULT, {"kind": kind, "flags": flags, "arg": arg}, timeout, None)

    def start_job(self, job_id: int, ops: int, *, timeout: float | None = None) -> Ack:
        """Send JOB_START and wait for its ACK (OK: queued, ``detail`` = jobs the board holds; REFUSED:
        queue full). Its JOB_DONE arrives later as a message; a board reset loses queued jobs."""
        return self._acked(m.JOB_START, {"job_id": job_id, "ops": ops}, timeout, None)

    def cancel_job(self, job_id: int, *, timeout: float | None = None) -> Ack:
        """Send JOB_CANCEL and wait for its ACK (OK: dropped, a JOB_DONE cancelled follows; BAD_ARG: not held)."""
        return self._acked(m.JOB_CANCEL, {"job_id": job_id}, timeout, None)

    def time_sync(self, timeout: float | None = None) -> TimeSync:
        """One TIME_SYNC exchange; stores and returns the result."""
        sent = time.monotonic()
        reply = self._request(m.TIME_SYNC, {"host_sim_s": self.sim_time(),
                                            "host_mono_ns": time.monotonic_ns()},
                              m.TIME_SYNC_REPLY, timeout, 0)
        rtt = reply.t_rx - sent
        f = reply.fields
        self.time_sync_result = TimeSync(rtt, sent + rtt / 2, f["host_sim_s"],
                                         f["board_uptime_ms"], f["board_ticks_ms"])
        self._last_sync = time.monotonic()
        return self.time_sync_result

    def write_raw(self, data: bytes) -> None:
        """Write raw bytes (diagnostics, fuzzing)."""
        self._write(data, count=False)

    # ---- internals: requests ------------------------------------------------------
    def _next_seq(self) -> int:
        with self._lock:
            seq = self._seq
            self._seq = m.next_seq(seq)
            return seq

    def _acked(self, mtype: int, fields: dict, timeout: float | None, retries: int | None) -> Ack:
        t0 = time.monotonic()
        msg = self._request(mtype, fields, m.ACK, timeout, retries)
        f = msg.fields
        return Ack(f["ref_seq"], f["status"], f["detail"], msg.t_rx - t0)

    def _request(self, mtype: int, fields: dict, reply_type: int, timeout: float | None,
                 retries: int | None) -> Message:
        timeout = self.ack_timeout_s if timeout is None else timeout
        retries = self.retries if retries is None else retries
        seq = self._next_seq()
        wire = encode_frame(mtype, seq, m.pack_payload(mtype, fields))
        key = (reply_type, seq)
        w = _Waiter(lambda x: True)
        with self._lock:
            self._replies[key] = w
        try:
            for attempt in range(retries + 1):
                if attempt:
                    self.stats["retries"] += 1
                self._write(wire)
                if w.event.wait(timeout):
                    if w.msg is None:
                        raise LinkDown(self.url)
                    return w.msg
                self.stats["timeouts"] += 1
            raise LinkTimeout("%s seq %d: no reply after %d tries" % (m.NAMES[mtype], seq, retries + 1))
        finally:
            with self._lock:
                self._replies.pop(key, None)

    def _write(self, data: bytes, count: bool = True) -> None:
        with self._wlock:
            ser = self._ser
            if ser is None:
                raise LinkDown(self.url)
            try:
                ser.write(data)
            except Exception as exc:       # SerialException, OSError, timeout
                raise LinkDown("%s: %s" % (self.url, exc)) from exc
        if count:
            self.stats["frames_tx"] += 1

    # ---- internals: port ----------------------------------------------------------
    def _event(self, name: str, **detail: Any) -> None:
        if self.on_event is not None and not safe_call(self.on_event, name, detail):
            self.stats["callback_errors"] += 1

    def _try_open(self) -> bool:
        # pyserial's rfc2217:// client has no write timeout (it raises NotImplementedError)
        kw = {} if self.url.startswith("rfc2217://") else {"write_timeout": 1.0}
        try:
            ser = self._open_fn(self.url, baudrate=self.baudrate, timeout=self.read_timeout_s, **kw)
        except (serial.SerialException, OSError, ValueError, NotImplementedError) as exc:
            self.open_error = open_failure(exc)
            self.open_failures += 1
            return False
        self.open_error, self.open_failures = "", 0
        self._decoder.reset()
        with self._wlock:
            self._ser = ser
            try:
                ser.write(b"\x00")           # terminate any partial frame on the board
            except Exception:
                pass
        self._opened_at = time.monotonic()
        self.stats["opens"] += 1
        if self._ever_connected:
            self.stats["reconnects"] += 1
        self.state = "open"
        self._need_handshake = True
        self._wake.set()
        self._event("port_open", url=self.url)
        return True

    def _drop_port(self, exc: BaseException | None, event: bool = True) -> None:
        with self._wlock:
            ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception:
                pass
        was = self._connected.is_set()
        self._connected.clear()
        with self._lock:
            pending = list(self._replies.values())
        for w in pending:
            w.event.set()                     # msg None -> LinkDown in _request
        if not self._stop.is_set():
            self.state = "disconnected"
        if event and ser is not None:
            self._event("disconnected", error=repr(exc), was_connected=was)

    def _io_loop(self) -> None:
        while not self._stop.is_set():
            ser = self._ser
            if ser is None:
                if not self._try_open():
                    self._stop.wait(self.retry_delay_s)
                continue
            try:
                n = ser.in_waiting
                data = ser.read(n if n else 1)
            except Exception as exc:          # unplugged: SerialException / OSError
                if not self._stop.is_set():
                    self._drop_port(exc)
                continue
            if data:
                self._on_bytes(data)
            silent = self.silent                # checked here: never blocked by a request
            if silent != self._silent:
                self._silent = silent
                if silent:
                    self.stats["silences"] += 1
                self._event("silent" if silent else "alive")

    def _supervise(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.02)
            self._wake.clear()
            if self._stop.is_set() or self._ser is None:
                continue
            if self._need_handshake:
                self._need_handshake = False
                try:
                    self._handshake()
                except LinkError:
                    self._need_handshake = self._ser is not None
                    self._stop.wait(0.05)
                continue
            now = time.monotonic()
            if (self._connected.is_set() and not self._silent
                    and now - self._last_sync > self.time_sync_interval_s):
                try:
                    self.time_sync()
                except LinkError:
                    pass

    def _handshake(self) -> None:
        nonce = int(time.monotonic_ns() & 0xFFFFFFFF)
        caps = self._request(m.HELLO, {"nonce": nonce}, m.CAPABILITIES, None, None)
        self.capabilities = strings(caps.fields)
        self._last_hb = max(self._last_hb, caps.t_rx)
        self.time_sync()
        self._ever_connected = True
        self.state = "connected"
        self._connected.set()
        self._event("connected", capabilities=self.capabilities)

    # ---- internals: receive -------------------------------------------------------
    def _on_bytes(self, data: bytes) -> None:
        self.stats["bytes_rx"] += len(data)
        for item in self._decoder.feed(data):
            if isinstance(item, Frame):
                self.stats["frames_rx"] += 1
                self._dispatch(item)
            else:
                self.stats[_ERROR_STAT.get(item.code, "garbage")] += 1
                name = m.ERROR_NAMES.get(item.code, str(item.code))
                self.errors_by_code[name] = self.errors_by_code.get(name, 0) + 1

    def _note_boot(self, uptime_ms: int, boot_count: int) -> None:
        if self._last_uptime is not None and (uptime_ms + 50 < self._last_uptime
                                              or boot_count != self._boot_count):
            self.stats["board_resets"] += 1
            self._need_handshake = True
            self._wake.set()
            self._event("board_reset", boot_count=boot_count)
        self._last_uptime = uptime_ms
        self._boot_count = boot_count

    def _dispatch(self, frame: Frame) -> None:
        now = time.monotonic()
        fields = frame.fields()
        msg = Message(frame.mtype, m.NAMES[frame.mtype], frame.seq, fields, now)
        t = frame.mtype
        if t in _REPLY_TYPES or (t == m.CAPABILITIES and fields["req_seq"] != m.NO_SEQ):
            key = (t, fields["ref_seq"] if t == m.ACK else fields["req_seq"])
            with self._lock:
                w = self._replies.get(key)
            if w is not None:
                w.msg = msg
                w.event.set()
            else:
                self.stats["unexpected"] += 1
        elif t == m.HEARTBEAT:
            self._last_hb = now
            self.heartbeat = fields
            self._note_boot(fields["uptime_ms"], fields["boot_count"])
        elif t == m.PAYLOAD_TELEMETRY:
            self.telemetry = fields
        elif t == m.CAPABILITIES:              # unsolicited: the board just booted
            self.capabilities = strings(fields)
            self._last_hb = now
            self._note_boot(0, fields["boot_count"])
            self._need_handshake = True
            self._wake.set()
        elif t == m.ERROR:
            self.stats["board_errors"] += 1
            self.stats["board_rx_errors"] = fields["count"]
        if t not in _REPLY_TYPES:
            if not put_drop_oldest(self.queue, msg):
                self.stats["queue_dropped"] += 1
        with self._lock:
            waiters = list(self._waiters)
        for w in waiters:
            if not w.event.is_set():
                try:
                    if w.pred(msg):
                        w.msg = msg
                        w.event.set()
                except Exception:
                    self.stats["callback_errors"] += 1
        if self.on_message is not None and not safe_call(self.on_message, msg):
            self.stats["callback_errors"] += 1
