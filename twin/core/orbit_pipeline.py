"""Pipelined orbit propagation: the next tick's SGP4 runs in a child process on the second core.

The orbit of tick k+1 does not depend on anything the models compute at tick k, so while the
parent steps the physics of tick k a child process propagates tick k+1 into shared memory.
With a radiation environment it also samples the trapped-particle environment at those
positions (:func:`twin.core.radiation.sample_along_orbit`), the other orbit-only work of a tick.
The child runs exactly the same code (:class:`~twin.core.orbit.FleetPropagator`,
:class:`~twin.core.radiation.RadiationEnvironment`), so results are bit-identical to in-process
computation. If the child dies, the parent falls back to computing in-process and says so in
:attr:`PipelinedPropagator.fallback_reason`.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time
from collections import deque
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from twin.core.catalogue import Catalogue, parse_tle_text, shift_epochs
from twin.core.orbit import FleetPropagator, OrbitState
from twin.core.radiation import LocalRadiation, RadiationParams, load_environment, sample_along_orbit

_ORBIT_FLOATS = 3 + 3 + 3 + 3  # r_teme, v_teme, r_itrs, lat/lon/alt
_RADIATION_FLOATS = 5  # LocalRadiation's five channels
_FLOATS_PER_SAT = _ORBIT_FLOATS + _RADIATION_FLOATS
_ALIVE_CHECK_S = 1.0  # setting: while waiting for the orbit worker, check this often that it still lives
BALANCE_TICKS = 8  # setting: ticks of timings behind a decision to move the radiation sample in-process


def radiation_belongs_in_process(waits_s: list[float], worker_radiation_s: list[float]) -> bool:
    """True when the parent waited for the orbit worker (median over the ticks given) longer than the
    worker's radiation sample takes: with the parent's own work P, the worker's W and the sample R,
    a tick takes max(P, W) and after the move max(P + R, W - R), shorter exactly when W - P > R."""
    if len(waits_s) < BALANCE_TICKS or not worker_radiation_s:
        return False
    return statistics.median(waits_s) > statistics.median(worker_radiation_s)


def _layout(n: int, buf: memoryview, slot: int) -> tuple[OrbitState, LocalRadiation]:
    """Views of one result slot in the shared buffer (channels of one quantity contiguous)."""
    per_slot = n * (_FLOATS_PER_SAT * 8 + 1)
    base = slot * per_slot
    f = np.ndarray((n, _ORBIT_FLOATS), dtype=np.float64, buffer=buf, offset=base)
    rad = np.ndarray((_RADIATION_FLOATS, n), dtype=np.float64, buffer=buf, offset=base + n * _ORBIT_FLOATS * 8)
    err = np.ndarray((n,), dtype=np.int8, buffer=buf, offset=base + n * _FLOATS_PER_SAT * 8)
    return (OrbitState(f[:, 0:3], f[:, 3:6], f[:, 6:9], f[:, 9], f[:, 10], f[:, 11], err),
            LocalRadiation(rad[0], rad[1], rad[2], rad[3], rad[4]))


def _buffer(shm: shared_memory.SharedMemory) -> memoryview:
    """The shared block's memory (None only after close)."""
    buf = shm.buf
    if buf is None:
        raise ValueError(f"shared memory {shm.name} is closed")
    return buf


def _worker(conn: Connection, source: str | tuple[tuple[str, ...], np.ndarray], shm_name: str,
            shift_days: tuple[float, float] | None = None,
            radiation: tuple[RadiationParams, float] | None = None) -> None:  # pragma: no cover - runs in the child
    shm = shared_memory.SharedMemory(name=shm_name)
    try:
        # TLE text, or (names, elements) for a catalogue built from elements: rebuilt as the parent built it
        cat = parse_tle_text(source, "<worker>") if isinstance(source, str) else \
            Catalogue.from_elements(source[0], source[1], "<worker>")
        # a re-epoched catalogue (twin.core.catalogue.shift_epochs): the same shift of the same text, bit for bit
        prop = FleetPropagator(cat if shift_days is None else shift_epochs(cat, shift_days))
        env = load_environment(*radiation) if radiation is not None else None
        n = len(prop)
        slots = [_layout(n, _buffer(shm), k) for k in (0, 1)]
        while True:
            msg = conn.recv()
            if msg is None:
                break
            if msg[0] == "replace":  # an orbit manoeuvre: new element sets for some satellites
                prop.replace(msg[1], msg[2])
                continue
            slot, jd, fr, gmst, with_radiation = msg
            t0 = time.perf_counter()
            o = prop.propagate(jd, fr, gmst)
            s, rs = slots[slot]
            s.r_teme_m[:] = o.r_teme_m
            s.v_teme_m_s[:] = o.v_teme_m_s
            s.r_itrs_m[:] = o.r_itrs_m
            s.lat_rad[:] = o.lat_rad
            s.lon_rad[:] = o.lon_rad
            s.alt_m[:] = o.alt_m
            s.error_code[:] = o.error_code
            t1 = time.perf_counter()
            if env is not None and with_radiation:
                r = sample_along_orbit(env, o)
                rs.proton_flux_cm2_s[:] = r.proton_flux_cm2_s
                rs.electron_flux_cm2_s[:] = r.electron_flux_cm2_s
                rs.dose_rate_rad_s[:] = r.dose_rate_rad_s
                rs.cover_dose_rate_rad_s[:] = r.cover_dose_rate_rad_s
                rs.seu_scale[:] = r.seu_scale
            conn.send((slot, t1 - t0, time.perf_counter() - t1))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass
    finally:
        del slots
        shm.close()


class PipelinedPropagator:
    """A :class:`FleetPropagator` whose next tick is computed ahead in a child process.

    ``radiation``: (params, cover glass g/cm^2) of a :func:`~twin.core.radiation.load_environment`
    to sample along the prefetched orbit as well (:meth:`radiation_at`).
    """

    def __init__(self, catalogue: Catalogue, radiation: tuple[RadiationParams, float] | None = None) -> None:
        self.local = FleetPropagator(catalogue)
        self.radiation = radiation
        self.n = n = len(catalogue)
        self.fallback_reason: str | None = None
        size = 2 * n * (_FLOATS_PER_SAT * 8 + 1)
        self._shm = shared_memory.SharedMemory(create=True, size=size)
        self._slots = [_layout(n, _buffer(self._shm), k) for k in (0, 1)]
        text: str | tuple[tuple[str, ...], np.ndarray] = (
            (catalogue.names, catalogue.elements) if catalogue.elements is not None else
            "\n".join(f"{a}\n{b}\n{c}" for a, b, c in zip(catalogue.names, catalogue.line1, catalogue.line2)))
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        shift = catalogue.epoch.shift_days if catalogue.epoch.applied == "shift" else None
        self._proc = ctx.Process(target=_worker, args=(child, text, self._shm.name, shift, radiation),
                                 daemon=True,
                                 name="orbitwin-orbit")
        self._proc.start()
        child.close()
        self._pending: tuple[int, float, float, float, bool] | None = None
        self._next_slot = 0
        self._served: tuple[int, OrbitState, bool] | None = None  # the slot the last propagate() returned
        self.radiation_served = 0  # ticks whose radiation sample came from the child
        # the radiation sample runs in the child until the child turns out to be the slower side
        # (radiation_belongs_in_process); results are the same wherever it runs
        self.radiation_in_worker = radiation is not None
        self.balance_note: str | None = None
        self._waits_s: deque[float] = deque(maxlen=BALANCE_TICKS)
        self._worker_radiation_s: deque[float] = deque(maxlen=BALANCE_TICKS)

    def __len__(self) -> int:
        return self.n

    @property
    def catalogue(self) -> Catalogue:
        return self.local.catalogue

    def teme(self, jd_utc: float, fr_utc: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.local.teme(jd_utc, fr_utc)

    def prefetch(self, jd_utc: float, fr_utc: float, gmst_rad: float) -> None:
        """Start propagating an instant in the child (the next tick's)."""
        if self.fallback_reason is not None or self._pending is not None:
            return
        slot = self._next_slot
        try:
            self._conn.send((slot, jd_utc, fr_utc, gmst_rad, self.radiation_in_worker))
        except (BrokenPipeError, OSError) as exc:
            self._fail(f"orbit worker gone: {exc}")
            return
        self._pending = (slot, jd_utc, fr_utc, gmst_rad, self.radiation_in_worker)
        self._next_slot = 1 - slot

    def _collect(self) -> int | None:
        assert self._pending is not None
        slot, with_radiation = self._pending[0], self._pending[4]
        self._pending = None
        t0 = time.perf_counter()
        try:
            # a child that died before it took its end of the pipe leaves that end open in this process
            # (multiprocessing's fd sharer): wait for its answer only while it is alive
            while not self._conn.poll(_ALIVE_CHECK_S):
                if not self._proc.is_alive():
                    self._fail(f"orbit worker exited (code {self._proc.exitcode}) before answering")
                    return None
            got, _orbit_s, radiation_s = self._conn.recv()
        except (EOFError, OSError) as exc:
            self._fail(f"orbit worker gone: {exc}")
            return None
        if with_radiation:
            self._waits_s.append(time.perf_counter() - t0)
            self._worker_radiation_s.append(radiation_s)
            if radiation_belongs_in_process(list(self._waits_s), list(self._worker_radiation_s)):
                self.move_radiation_in_process(
                    f"radiation sampled in-process: the orbit worker was the slower side (waited "
                    f"{statistics.median(self._waits_s) * 1e3:.0f} ms a tick for it; its radiation sample took "
                    f"{statistics.median(self._worker_radiation_s) * 1e3:.0f} ms)")
        return slot if got == slot else None

    @property
    def satrecs(self) -> list[Any]:
        """The element sets in use (the parent's copy; the child holds the same)."""
        return self.local.satrecs

    def replace(self, rows: np.ndarray, elements: np.ndarray) -> None:
        """New element sets for ``rows``, here and in the child. A prefetched tick computed with the old
        ones is dropped (the next :meth:`propagate` computes in-process, as the child would have)."""
        if self._pending is not None:
            self._collect()
        self.local.replace(rows, elements)
        if self.fallback_reason is None:
            try:
                self._conn.send(("replace", np.asarray(rows), elements))
            except (BrokenPipeError, OSError) as exc:
                self._fail(f"orbit worker gone: {exc}")

    def move_radiation_in_process(self, why: str) -> None:
        """From the next prefetch on, the caller samples radiation itself (:meth:`radiation_at` returns None)."""
        self.radiation_in_worker = False
        self.balance_note = why

    def propagate(self, jd_utc: float, fr_utc: float, gmst_rad: float) -> OrbitState:
        """The orbit at an instant: from the prefetched slot when it matches, else computed now."""
        self._served = None
        if self._pending is not None:
            key, with_radiation = self._pending[1:4], self._pending[4]
            slot = self._collect()
            if slot is not None and key == (jd_utc, fr_utc, gmst_rad):
                orbit = self._slots[slot][0]
                self._served = (slot, orbit, with_radiation)
                return orbit
        return self.local.propagate(jd_utc, fr_utc, gmst_rad)

    def radiation_at(self, orbit: OrbitState) -> LocalRadiation | None:
        """The child's radiation sample for ``orbit`` when it is the slot the last :meth:`propagate` returned
        (and the child samples radiation), else None: the caller samples in-process."""
        if self.radiation is None or self._served is None or self._served[1] is not orbit or not self._served[2]:
            return None
        self.radiation_served += 1
        return self._slots[self._served[0]][1]

    def _fail(self, reason: str) -> None:
        self.fallback_reason = reason
        self._pending = None

    def close(self) -> None:
        """Stop the child and free the shared memory."""
        if self._proc.is_alive():
            try:
                if self._pending is not None:
                    self._collect()
                self._conn.send(None)
            except (BrokenPipeError, OSError, EOFError):
                pass
            self._proc.join(timeout=2.0)
            if self._proc.is_alive():
                self._proc.kill()
        self._conn.close()
        self._slots = []
        self._served = None
        try:
            self._shm.close()
        except BufferError:  # a caller still holds a view of a slot: the OS frees it at exit
            pass
        try:
            self._shm.unlink()
        except FileNotFoundError:
            pass

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass
