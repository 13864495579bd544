"""Sun position and Earth rotation from skyfield, offline, cached on a coarse time grid.

skyfield (JPL DE421 and IERS data from the ``skyfield-data`` package: nothing is downloaded)
is the authority; calling it every tick would cost more than the rest of the step, so the Sun's
TEME position and UT1-UTC are evaluated at knots ``KNOT_S`` apart in vectorised batches and
linearly interpolated in between (error < 1e-7 of the Sun's distance: far below what eclipse
or beta angle can resolve). See docs/physics.md#constants.
"""

from __future__ import annotations

import datetime as dt
import functools

import numpy as np
from numpy.typing import NDArray

from twin.core.constants import DAYS_PER_JULIAN_YEAR, JD_J2000, SECONDS_PER_DAY

KNOT_S = 600.0
_BATCH_KNOTS = 144  # one day of knots per skyfield call


@functools.lru_cache(maxsize=1)
def skyfield_context():  # type: ignore[no-untyped-def]
    """(timescale, ephemeris) loaded from the offline ``skyfield-data`` files."""
    import warnings

    from skyfield.api import Loader

    with warnings.catch_warnings():
        # skyfield-data warns when its IERS table passes its prediction horizon; skyfield then
        # extrapolates UT1-UTC, which is what an offline twin must do anyway.
        warnings.simplefilter("ignore", RuntimeWarning)
        from skyfield_data import get_skyfield_data_path

        path = get_skyfield_data_path()

    loader = Loader(path, expire=False, verbose=False)
    ts = loader.timescale(builtin=True)
    eph = loader("de421.bsp")
    return ts, eph


class SunEphemeris:
    """Sun position in TEME (m) and UT1-UTC (s) at any UTC instant, from cached skyfield knots."""

    def __init__(self) -> None:
        self._knot0_jd: float | None = None
        self._sun_teme_m = np.empty((0, 3))
        self._dut1_s = np.empty(0)

    def _fill(self, knot_start: float) -> None:
        from skyfield.sgp4lib import TEME

        ts, eph = skyfield_context()
        jd = knot_start + np.arange(_BATCH_KNOTS + 1) * (KNOT_S / SECONDS_PER_DAY)
        t = ts.utc(*jd_to_utc_tuple(jd))
        sun_gcrs_m = (eph["sun"] - eph["earth"]).at(t).position.m  # geometric, as eclipses need
        rot = TEME.rotation_at(t)  # (3, 3, k): GCRS -> TEME
        self._sun_teme_m = np.einsum("ijk,jk->ki", rot, sun_gcrs_m)
        self._dut1_s = np.asarray(t.dut1, dtype=float)
        self._knot0_jd = knot_start

    def at(self, jd_utc: float, fr_utc: float) -> tuple[np.ndarray, float]:
        """Sun position in TEME (m, shape (3,)) and UT1-UTC (s) at the given UTC Julian date."""
        day = KNOT_S / SECONDS_PER_DAY
        if self._knot0_jd is None:
            k_abs = None
        else:
            k_abs = ((jd_utc - self._knot0_jd) + fr_utc) / day
        if k_abs is None or k_abs < 0.0 or k_abs >= _BATCH_KNOTS:
            start = jd_utc + np.floor(fr_utc / day) * day
            self._fill(start)
            k_abs = ((jd_utc - start) + fr_utc) / day
        k = int(k_abs)
        w = k_abs - k
        sun = self._sun_teme_m[k] * (1.0 - w) + self._sun_teme_m[k + 1] * w
        dut1 = self._dut1_s[k] * (1.0 - w) + self._dut1_s[k + 1] * w
        return sun, float(dut1)


UtcTuple = tuple[NDArray[np.int_], NDArray[np.int_], NDArray[np.int_], int, int, NDArray[np.float64]]


def jd_to_utc_tuple(jd_utc: np.ndarray) -> UtcTuple:
    """Split UTC Julian dates into skyfield's ``ts.utc(year, month, day, hour, minute, second)`` form."""
    jd = np.asarray(jd_utc, dtype=float)
    z = np.floor(jd + 0.5)
    f = jd + 0.5 - z
    alpha = np.floor((z - 1867216.25) / 36524.25)
    a = z + 1 + alpha - np.floor(alpha / 4)
    b = a + 1524
    c = np.floor((b - 122.1) / DAYS_PER_JULIAN_YEAR)
    d = np.floor(DAYS_PER_JULIAN_YEAR * c)
    e = np.floor((b - d) / 30.6001)
    day = b - d - np.floor(30.6001 * e)
    month = np.where(e < 14, e - 1, e - 13)
    year = np.where(month > 2, c - 4716, c - 4715)
    return (year.astype(int), month.astype(int), day.astype(int), 0, 0, f * SECONDS_PER_DAY)


_J2000_UTC = dt.datetime(2000, 1, 1, 12, tzinfo=dt.timezone.utc)


def jd_to_datetime(jd_utc: float) -> dt.datetime:
    """The UTC datetime of a UTC Julian date, rounded to the millisecond."""
    t = _J2000_UTC + dt.timedelta(days=jd_utc - JD_J2000)
    return t + dt.timedelta(microseconds=500) - dt.timedelta(microseconds=(t.microsecond + 500) % 1000)


def iso_to_jd(text: str) -> float:
    """UTC Julian date of an ISO 8601 time (``2026-02-23T12:00:00Z``; a naive time is UTC)."""
    t = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return JD_J2000 + (t - _J2000_UTC).total_seconds() / SECONDS_PER_DAY
