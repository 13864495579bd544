"""THE single definition of the Orbitwin serial protocol (firmware and host).

Wire frame:  COBS( header | payload | crc16 ) | 0x00
  header  = struct HEADER_FMT "<BBHH": version, type, seq, payload_len
  crc16   = CRC-16/CCITT-FALSE over header+payload, big-endian (">H")
  payload = struct LAYOUTS[type][0], little-endian, exact size

All multi-byte payload fields are little-endian.  Strings ("Ns") are NUL-padded
ASCII.  Host side imports this module: ``from orbitwin_fw import messages``.
MicroPython-compatible (struct only).
"""
import struct

VERSION = 1                     # bump on any incompatible layout change
HEADER_FMT = "<BBHH"
HEADER_SIZE = 6
CRC_SIZE = 2
MAX_PAYLOAD = 240
MAX_RAW = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE      # 248 bytes before COBS
MAX_ENCODED = MAX_RAW + 1 + MAX_RAW // 254          # 249 bytes, without 0x00
SEQ_MOD = 0x10000
NO_SEQ = 0xFFFF                 # "not a reply" in req_seq fields

# ---- message types -------------------------------------------------------
HELLO = 0x01                    # host -> board
CAPABILITIES = 0x02             # board -> host (reply to HELLO, or boot announce)
HEARTBEAT = 0x03                # board -> host, ~5 Hz
PAYLOAD_TELEMETRY = 0x04        # board -> host, default 10 Hz
TIME_SYNC = 0x05                # host -> board
TIME_SYNC_REPLY = 0x06          # board -> host
COMMAND = 0x10                  # host -> board, answered by ACK
FAULT = 0x11                    # host -> board (fault injection), answered by ACK
ACK = 0x12                      # board -> host
JOB_START = 0x13                # host -> board: queue a job of `ops` unit jobs, answered by ACK
JOB_DONE = 0x14                 # board -> host: a job ended (done, cancelled or refused)
JOB_CANCEL = 0x15               # host -> board: drop a queued job, answered by ACK
ERROR = 0x7F                    # either way: a bad frame was received

# type -> (struct format, field names)
LAYOUTS = {
    HELLO: ("<I", ("nonce",)),
    CAPABILITIES: ("<HI16s8sBBBBBIHBHIfHHB", (
        "req_seq", "nonce", "board_id", "platform",
        "fw_major", "fw_minor", "fw_patch", "n_cores", "n_accel",
        "buffer_size", "block_size", "has_die_temp", "telemetry_hz",
        "ops_per_job", "jobs_per_s_max", "wdt_timeout_ms", "boot_count",
        "reset_cause")),
    HEARTBEAT: ("<IIHB", ("uptime_ms", "count", "boot_count", "flags")),
    PAYLOAD_TELEMETRY: ("<fIIfffIIIiBBI", (
        "utilisation", "jobs_done", "job_latency_us", "die_temp_k",
        "load", "throttle", "seu_detected", "seu_corrected",
        "seu_uncorrectable", "last_seu_bit", "latched", "weights_ok",
        "uptime_ms")),
    TIME_SYNC: ("<dQ", ("host_sim_s", "host_mono_ns")),
    TIME_SYNC_REPLY: ("<HdQII", (
        "req_seq", "host_sim_s", "host_mono_ns", "board_ticks_ms",
        "board_uptime_ms")),
    COMMAND: ("<Bf", ("code", "value")),
    FAULT: ("<BBI", ("kind", "flags", "arg")),
    ACK: ("<HBBI", ("ref_seq", "ref_type", "status", "detail")),
    JOB_START: ("<II", ("job_id", "ops")),
    JOB_DONE: ("<IIIIB", ("job_id", "ops_done", "busy_us", "upsets", "status")),
    JOB_CANCEL: ("<I", ("job_id",)),
    ERROR: ("<BBHI", ("code", "ref_type", "ref_seq", "count")),
}

NAMES = {
    HELLO: "HELLO", CAPABILITIES: "CAPABILITIES", HEARTBEAT: "HEARTBEAT",
    PAYLOAD_TELEMETRY: "PAYLOAD_TELEMETRY", TIME_SYNC: "TIME_SYNC",
    TIME_SYNC_REPLY: "TIME_SYNC_REPLY", COMMAND: "COMMAND", FAULT: "FAULT",
    ACK: "ACK", JOB_START: "JOB_START", JOB_DONE: "JOB_DONE", JOB_CANCEL: "JOB_CANCEL",
    ERROR: "ERROR",
}
ACKED = (COMMAND, FAULT, JOB_START, JOB_CANCEL)     # host requests answered by ACK (deduplicated)

SIZES = {}
DEFAULTS = {}                   # type -> tuple of zero values (b"" for strings)
for _t in LAYOUTS:
    SIZES[_t] = struct.calcsize(LAYOUTS[_t][0])
    DEFAULTS[_t] = struct.unpack(LAYOUTS[_t][0], bytes(SIZES[_t]))

# ---- COMMAND codes (COMMAND.code; value is a float argument) -------------
CMD_PING = 0
CMD_SET_LOAD = 1            # value: load set-point 0..1
CMD_SET_THROTTLE = 2        # value: throttle 0..1 (1 = unthrottled)
CMD_RESET = 3               # soft reset (firmware reboot)
CMD_POWER_CYCLE = 4         # hard reset / power-cycle
CMD_SET_TELEMETRY_HZ = 5    # value: 0.1..1000 Hz
CMD_ENTER_REPL = 6          # real boards: leave firmware, give the REPL back
COMMAND_NAMES = {0: "PING", 1: "SET_LOAD", 2: "SET_THROTTLE", 3: "RESET",
                 4: "POWER_CYCLE", 5: "SET_TELEMETRY_HZ", 6: "ENTER_REPL"}

# ---- FAULT kinds ----------------------------------------------------------
FAULT_SEU = 1               # arg: bit index in weights buffer (mod size)
FAULT_LATCHUP = 2           # useful work stops until reset / power-cycle
FAULT_HANG = 3              # main loop stops; watchdog resets the board
FAULT_SEU_DOUBLE = 0x01     # FAULT.flags for SEU: flip 2 bits in one block (uncorrectable)
FAULT_NAMES = {1: "SEU", 2: "LATCHUP", 3: "HANG"}

# ---- ACK status -----------------------------------------------------------
ST_OK = 0
ST_BAD_ARG = 1
ST_UNKNOWN = 2
ST_REFUSED = 3
ST_UNSUPPORTED = 4
STATUS_NAMES = {0: "OK", 1: "BAD_ARG", 2: "UNKNOWN", 3: "REFUSED", 4: "UNSUPPORTED"}

# ---- jobs (JOB_START / JOB_DONE / JOB_CANCEL) -----------------------------
JOB_QUEUE = 16              # jobs a board holds (queued + running); more are refused
JOB_ST_DONE = 0             # JOB_DONE.status: every op ran
JOB_ST_CANCELLED = 1        # dropped by JOB_CANCEL
JOB_ST_REFUSED = 2          # not queued: the queue was full (or ops == 0)
JOB_STATUS_NAMES = {0: "done", 1: "cancelled", 2: "refused"}

# ---- HEARTBEAT.flags bits --------------------------------------------------
HB_LATCHED = 0x01
HB_WEIGHTS_BAD = 0x02
HB_THROTTLED = 0x04
HB_HW_WDT = 0x08

# ---- reset causes (CAPABILITIES.reset_cause) ------------------------------
RC_POWER_ON = 0
RC_SOFT = 1                 # CMD_RESET
RC_POWER_CYCLE = 2          # CMD_POWER_CYCLE
RC_WATCHDOG = 3
RC_EXTERNAL = 4             # DTR/RTS / reset pin
RC_CRASH = 5                # unhandled exception in the firmware loop

# ---- protocol error codes (ProtocolError.code, ERROR.code) ----------------
E_COBS = 1          # malformed COBS (garbage)
E_CRC = 2           # CRC mismatch
E_SHORT = 3         # shorter than header + crc (truncated)
E_OVERSIZE = 4      # more than MAX_ENCODED bytes before a delimiter
E_VERSION = 5       # unsupported protocol version
E_TYPE = 6          # unknown message type
E_LENGTH = 7        # payload_len disagrees with frame or layout (truncated)
E_ENCODE = 8        # cannot encode (host/firmware bug)
ERROR_NAMES = {1: "cobs", 2: "crc", 3: "short", 4: "oversize", 5: "version",
               6: "type", 7: "length", 8: "encode"}


class ProtocolError(Exception):
    """The only exception type raised for bad frames; `.code` is an E_* value."""

    def __init__(self, code, msg=""):
        Exception.__init__(self, code, msg)
        self.code = code
        self.msg = msg

    def __repr__(self):
        return "ProtocolError(%s, %r)" % (ERROR_NAMES.get(self.code, self.code), self.msg)


def pack_payload(mtype, fields):
    """Pack a dict (missing fields -> 0 / b"") into the payload bytes of `mtype`."""
    layout = LAYOUTS.get(mtype)
    if layout is None:
        raise ProtocolError(E_TYPE, "unknown type %d" % mtype)
    fmt, names = layout
    vals = []
    zeros = DEFAULTS[mtype]
    for i in range(len(names)):
        v = fields.get(names[i])
        if v is None:
            v = zeros[i]
        if isinstance(v, str):
            v = v.encode()
        vals.append(v)
    try:
        return struct.pack(fmt, *vals)
    except Exception as exc:  # struct.error, OverflowError, TypeError
        raise ProtocolError(E_ENCODE, "%s: %s" % (NAMES[mtype], exc))


def unpack_payload(mtype, payload):
    """Unpack payload bytes of `mtype` into a dict; strings lose NUL padding."""
    layout = LAYOUTS.get(mtype)
    if layout is None:
        raise ProtocolError(E_TYPE, "unknown type %d" % mtype)
    if len(payload) != SIZES[mtype]:
        raise ProtocolError(E_LENGTH, "%s payload %d != %d" % (NAMES[mtype], len(payload), SIZES[mtype]))
    fmt, names = layout
    vals = struct.unpack(fmt, payload)
    out = {}
    for i in range(len(names)):
        v = vals[i]
        if isinstance(v, bytes):
            end = v.find(b"\x00")
            if end >= 0:
                v = v[:end]
        out[names[i]] = v
    return out


def next_seq(seq):
    """Next sequence number (wraps at 2**16, skipping NO_SEQ)."""
    seq = (seq + 1) % SEQ_MOD
    if seq == NO_SEQ:
        seq = 0
    return seq
