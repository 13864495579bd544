"""Firmware main loop: protocol handling, duty-cycled workload, jobs, scrub, telemetry.

Firmware(board).step() runs one loop iteration; run() loops forever.  On a
board, a top-level /main.py calls run_board().  MicroPython-compatible.
"""
import struct

from orbitwin_fw import FW_VERSION
from orbitwin_fw import board as bd
from orbitwin_fw import messages as m
from orbitwin_fw.framing import FrameDecoder, encode_frame
from orbitwin_fw.payload import Payload, OPS_PER_JOB

WINDOW_US = 20000           # busy credit cap (one duty-cycle window)
MAX_BURST_US = 4000         # longest run of jobs between input polls
ERROR_REPORT_MS = 100       # at most one ERROR frame per 100 ms
DEDUP = 8                   # remembered command seqs (retries are not re-executed)


class Firmware:
    """One boot of the payload firmware on `board`."""

    def __init__(self, board, seed=1, buffer_size=8192, block_size=256,
                 telemetry_hz=10, heartbeat_hz=5, scrub_blocks_per_s=400,
                 load=0.5, boot_count=0, reset_cause=m.RC_POWER_ON, job_queue=m.JOB_QUEUE):
        self.board = board
        self.port = board.port
        self.payload = Payload(buffer_size, block_size, seed)
        self.decoder = FrameDecoder()
        self.boot_count = boot_count
        self.reset_cause = reset_cause
        self.load = load
        self.throttle = 1.0
        self.latched = False
        self.hung = False
        self.telemetry_period_ms = 1000.0 / telemetry_hz
        self.heartbeat_period_ms = 1000 // heartbeat_hz
        self.scrub_period_us = 1000000 // scrub_blocks_per_s
        self.tx_seq = 0
        self.hb_count = 0
        self.jobs_done = 0
        self.job_latency_us = 0
        self.errors_rx = 0
        self.reset_request = None        # reset cause, handled by run()/simulator
        # host jobs (JOB_START), first = running: [job_id, ops, ops_done, busy_us, uncorrectable at start
        # or -1 before its first op]; lost on reset (the host times them out)
        self.jobs = []
        self.job_queue = job_queue
        self._acks = []                  # [(seq, type, wire bytes)] for dedup
        self._err_pending = None
        now = bd.ticks_ms()
        self._up_ms = now
        self._uptime = 0
        self._last_ms = now
        self._last_us = bd.ticks_us()
        self._next_hb = now
        self._next_tm = now
        self._next_err = now
        self._scrub_us = self._last_us
        self._credit_us = 0
        self._busy_us = 0
        self._win_us = 0
        self.utilisation = 0.0
        self.jobs_per_s_max = self._calibrate()
        self.port.write(b"\x00")         # flush the host's decoder
        self._send_caps(m.NO_SEQ, 0)     # boot announce

    # ---- helpers ------------------------------------------------------------
    def uptime_ms(self):
        now = bd.ticks_ms()
        self._uptime += bd.ticks_diff(now, self._up_ms)
        self._up_ms = now
        return self._uptime & 0xFFFFFFFF

    def _calibrate(self):
        t0 = bd.ticks_us()
        for _ in range(4):
            self.payload.job()
        dt = bd.ticks_diff(bd.ticks_us(), t0)
        return 4000000.0 / dt if dt > 0 else 0.0

    def _take_seq(self):
        seq = self.tx_seq
        self.tx_seq = m.next_seq(seq)
        return seq

    def send(self, mtype, fields, seq=None):
        if seq is None:
            seq = self._take_seq()
        wire = encode_frame(mtype, seq, m.pack_payload(mtype, fields))
        self.port.write(wire)
        return wire

    def _send_caps(self, req_seq, nonce):
        b = self.board
        p = self.payload
        self.send(m.CAPABILITIES, {
            "req_seq": req_seq, "nonce": nonce, "board_id": b.board_id(),
            "platform": b.platform, "fw_major": FW_VERSION[0],
            "fw_minor": FW_VERSION[1], "fw_patch": FW_VERSION[2],
            "n_cores": b.n_cores, "n_accel": b.n_accel,
            "buffer_size": p.size, "block_size": p.block_size,
            "has_die_temp": 1 if b.has_die_temp() else 0,
            "telemetry_hz": int(1000 / self.telemetry_period_ms + 0.5),
            "ops_per_job": OPS_PER_JOB, "jobs_per_s_max": self.jobs_per_s_max,
            "wdt_timeout_ms": b.wdt_timeout_ms, "boot_count": self.boot_count,
            "reset_cause": self.reset_cause})

    def _ack(self, frame, status, detail=0):
        wire = self.send(m.ACK, {"ref_seq": frame.seq, "ref_type": frame.mtype,
                                 "status": status, "detail": detail})
        self._acks.append((frame.seq, frame.mtype, wire))
        if len(self._acks) > DEDUP:
            self._acks.pop(0)

    # ---- input --------------------------------------------------------------
    def poll_input(self):
        data = self.port.read()
        while data:
            for item in self.decoder.feed(data):
                if isinstance(item, m.ProtocolError):
                    self.errors_rx += 1
                    if self._err_pending is None:
                        self._err_pending = item.code
                else:
                    self.handle(item)
            if self.hung or self.reset_request is not None:
                return
            data = self.port.read()

    def handle(self, frame):
        t = frame.mtype
        if t in m.ACKED:
            for seq, typ, wire in self._acks:
                if seq == frame.seq and typ == t:
                    self.port.write(wire)        # retry of a command already executed
                    return
        if t == m.TIME_SYNC:
            # echo the host's 16 bytes verbatim: single-precision-float ports
            # (rp2) would lose the f64 sim time in an unpack/pack round trip
            body = struct.pack("<H", frame.seq) + frame.payload[:16] + struct.pack(
                "<II", bd.ticks_ms(), self.uptime_ms())
            self.port.write(encode_frame(m.TIME_SYNC_REPLY, self._take_seq(), body))
            return
        f = frame.fields()
        if t == m.HELLO:
            self._acks = []
            self._send_caps(frame.seq, f["nonce"])
        elif t == m.COMMAND:
            self._command(frame, f["code"], f["value"])
        elif t == m.FAULT:
            self._fault(frame, f["kind"], f["flags"], f["arg"])
        elif t == m.JOB_START:
            self._job_start(frame, f["job_id"], f["ops"])
        elif t == m.JOB_CANCEL:
            self._job_cancel(frame, f["job_id"])
        else:                                     # board->host types sent to the board
            self.send(m.ERROR, {"code": m.E_TYPE, "ref_type": t, "ref_seq": frame.seq,
                                "count": self.errors_rx})

    def _command(self, frame, code, value):
        if code == m.CMD_PING:
            self._ack(frame, m.ST_OK, self.uptime_ms())
        elif code == m.CMD_SET_LOAD or code == m.CMD_SET_THROTTLE:
            if not (0.0 <= value <= 1.0):         # also rejects NaN
                self._ack(frame, m.ST_BAD_ARG)
                return
            if code == m.CMD_SET_LOAD:
                self.load = value
            else:
                self.throttle = value
            self._ack(frame, m.ST_OK)
        elif code == m.CMD_SET_TELEMETRY_HZ:
            if not (0.1 <= value <= 1000.0):
                self._ack(frame, m.ST_BAD_ARG)
                return
            self.telemetry_period_ms = 1000.0 / value
            self._ack(frame, m.ST_OK)
        elif code == m.CMD_RESET or code == m.CMD_POWER_CYCLE or code == m.CMD_ENTER_REPL:
            self._ack(frame, m.ST_OK)
            if code == m.CMD_RESET:
                self.reset_request = m.RC_SOFT
            elif code == m.CMD_POWER_CYCLE:
                self.reset_request = m.RC_POWER_CYCLE
            else:
                self.reset_request = -1
        else:
            self._ack(frame, m.ST_UNKNOWN)

    def _fault(self, frame, kind, flags, arg):
        p = self.payload
        if kind == m.FAULT_SEU:
            bit = p.flip_bit(arg)
            if flags & m.FAULT_SEU_DOUBLE:
                p.flip_bit(bit ^ 1)               # neighbour bit, same byte and block
            self._ack(frame, m.ST_OK, bit)
        elif kind == m.FAULT_LATCHUP:
            self.latched = True
            self._ack(frame, m.ST_OK)
        elif kind == m.FAULT_HANG:
            self._ack(frame, m.ST_OK)
            self.hung = True
        else:
            self._ack(frame, m.ST_UNKNOWN)

    # ---- jobs ---------------------------------------------------------------
    def _job_start(self, frame, job_id, ops):
        """Queue a job of `ops` unit jobs.  ACK detail = jobs held; a job not queued (ops 0: BAD_ARG,
        queue full: REFUSED) also gets its JOB_DONE (refused) at once."""
        if ops < 1 or len(self.jobs) >= self.job_queue:
            self._ack(frame, m.ST_BAD_ARG if ops < 1 else m.ST_REFUSED, len(self.jobs))
            self._job_done([job_id, ops, 0, 0, -1], m.JOB_ST_REFUSED)
            return
        self.jobs.append([job_id, ops, 0, 0, -1])
        self._ack(frame, m.ST_OK, len(self.jobs))

    def _job_cancel(self, frame, job_id):
        for i in range(len(self.jobs)):
            if self.jobs[i][0] == job_id:
                job = self.jobs.pop(i)
                self._ack(frame, m.ST_OK)
                self._job_done(job, m.JOB_ST_CANCELLED)
                return
        self._ack(frame, m.ST_BAD_ARG)            # not held: unknown, or already ended

    def _job_done(self, job, status):
        upsets = self.payload.seu_uncorrectable - job[4] if job[4] >= 0 else 0
        self.send(m.JOB_DONE, {"job_id": job[0], "ops_done": job[2], "busy_us": min(job[3], 0xFFFFFFFF),
                               "upsets": upsets, "status": status})

    def _job_op(self, d):
        """Credit one unit job of `d` us to the running job; end it after its last op."""
        job = self.jobs[0]
        if job[4] < 0:
            job[4] = self.payload.seu_uncorrectable
        job[2] += 1
        job[3] += d
        if job[2] >= job[1]:
            self.jobs.pop(0)
            self._job_done(job, m.JOB_ST_DONE)

    def duty(self):
        """Busy fraction the workload runs at: host jobs take the accelerator at `throttle`, ahead of
        the background set-point `load * throttle`; nothing while latched."""
        if self.latched:
            return 0.0
        if self.jobs:
            return self.throttle
        return self.load * self.throttle

    # ---- loop ---------------------------------------------------------------
    def _work(self, now_us):
        dt = bd.ticks_diff(now_us, self._last_us)
        self._last_us = now_us
        if dt < 0:
            dt = 0
        self._win_us += dt
        duty = self.duty()
        if duty <= 0.0:
            self._credit_us = 0
            return
        self._credit_us = min(self._credit_us + duty * dt, WINDOW_US)
        t_start = now_us
        p = self.payload
        while self._credit_us > 0:
            t0 = bd.ticks_us()
            p.job()
            t1 = bd.ticks_us()
            d = bd.ticks_diff(t1, t0)
            self._credit_us -= d
            self._busy_us += d
            self.jobs_done += 1
            self.job_latency_us = d if not self.job_latency_us else (self.job_latency_us * 7 + d) // 8
            if self.jobs:
                self._job_op(d)
            if bd.ticks_diff(t1, t_start) > MAX_BURST_US:
                break

    def _telemetry(self, now):
        if self._win_us > 0:
            self.utilisation = min(1.0, self._busy_us / self._win_us)
        self._busy_us = 0
        self._win_us = 0
        self.board.note_utilisation(self.utilisation, self.telemetry_period_ms)
        p = self.payload
        self.send(m.PAYLOAD_TELEMETRY, {
            "utilisation": self.utilisation, "jobs_done": self.jobs_done & 0xFFFFFFFF,
            "job_latency_us": self.job_latency_us, "die_temp_k": self.board.die_temp_k(),
            "load": self.load, "throttle": self.throttle,
            "seu_detected": p.seu_detected, "seu_corrected": p.seu_corrected,
            "seu_uncorrectable": p.seu_uncorrectable, "last_seu_bit": p.last_seu_bit,
            "latched": 1 if self.latched else 0, "weights_ok": 1 if p.weights_ok() else 0,
            "uptime_ms": self.uptime_ms()})

    def _heartbeat(self):
        flags = 0
        if self.latched:
            flags |= m.HB_LATCHED
        if not self.payload.weights_ok():
            flags |= m.HB_WEIGHTS_BAD
        if self.throttle < 1.0:
            flags |= m.HB_THROTTLED
        if self.board.hw_wdt:
            flags |= m.HB_HW_WDT
        self.hb_count += 1
        self.send(m.HEARTBEAT, {"uptime_ms": self.uptime_ms(), "count": self.hb_count,
                                "boot_count": self.boot_count, "flags": flags})

    def step(self):
        """One main-loop iteration.  Returns the time (ms) the caller may idle."""
        if self.hung:
            self.board.hang()           # real board with WDT: never returns
            return 5
        self.poll_input()
        if self.reset_request is not None:
            return 0
        self.board.feed_wdt()
        now_us = bd.ticks_us()
        self._work(now_us)
        if bd.ticks_diff(now_us, self._scrub_us) >= self.scrub_period_us:
            self._scrub_us = now_us
            self.payload.scrub_block()
        now = bd.ticks_ms()
        if bd.ticks_diff(now, self._next_hb) >= 0:
            self._next_hb = bd.ticks_add(now, self.heartbeat_period_ms)
            self._heartbeat()
        if bd.ticks_diff(now, self._next_tm) >= 0:
            self._next_tm = bd.ticks_add(now, int(self.telemetry_period_ms))
            self._telemetry(now)
        if self._err_pending is not None and bd.ticks_diff(now, self._next_err) >= 0:
            self._next_err = bd.ticks_add(now, ERROR_REPORT_MS)
            self.send(m.ERROR, {"code": self._err_pending, "ref_type": 0,
                                "ref_seq": m.NO_SEQ, "count": self.errors_rx})
            self._err_pending = None
        idle = min(bd.ticks_diff(self._next_hb, now), bd.ticks_diff(self._next_tm, now), 20)
        if self.duty() > 0:
            idle = 0 if self._credit_us > 0 else min(idle, 2)
        return max(0, idle)

    def run(self):
        """Loop until a reset is requested; returns the reset cause."""
        while self.reset_request is None:
            idle = self.step()
            if idle and self.reset_request is None:
                self.port.wait(idle)
        return self.reset_request


def run_board(port=None, use_hw_wdt=True, **kw):
    """Entry point on a real MicroPython board: loops across soft resets.

    A 256-byte scrub block costs a few ms on an RP2040, so the scrub rate
    defaults to 20 blocks/s there (8 KiB pass in 1.6 s) instead of 400.
    """
    if "scrub_blocks_per_s" not in kw:
        kw["scrub_blocks_per_s"] = 20
    b = bd.Board(port or bd.StdioPort(), use_hw_wdt=use_hw_wdt)
    cause = m.RC_POWER_ON
    boots = 0
    while True:
        fw = Firmware(b, boot_count=boots, reset_cause=cause, **kw)
        cause = fw.run()
        if cause == -1:                             # CMD_ENTER_REPL
            b.port.close()
            if b.hw_wdt:
                try:
                    open("/orbitwin_safe", "w").close()   # boot main.py skips us
                except OSError:
                    pass
                b.reset(cause)
            return
        if cause == m.RC_POWER_CYCLE:
            b.reset(cause)                          # machine.reset(): full reboot
        boots += 1
