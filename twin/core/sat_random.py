"""Per-satellite counter-based random streams.

Every random number the physics draws for a satellite is a pure function of (seed, the
satellite's identity, tick, stream, index): a keyed hash, as in counter-based generators
(Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3"; docs/physics.md#random-streams).
A satellite therefore sees the same numbers whichever process steps it, in whatever company and
order: a shard of the fleet draws exactly what the single-process run draws for the same satellites.

The hash is the 64-bit finaliser of MurmurHash3 (``fmix64``) applied in a chain, as SplitMix64
does; the top 53 bits make a uniform double in [0, 1). Distributions are built from uniforms by
exact inversion (Poisson, binomial, categorical) or Box-Muller (normal); draws whose inversion
would underflow fall back to numpy's Philox generator keyed by the same hash, still exact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

import numpy as np

_MASK: Final = (1 << 64) - 1
_M1: Final = 0xFF51AFD7ED558CCD
_M2: Final = 0xC4CEB9FE1A85EC53
_GOLDEN: Final = 0x9E3779B97F4A7C15  # 2^64 / golden ratio (SplitMix64's increment)
_TO_UNIT: Final = 2.0 ** -53
INVERSION_MAX_MEAN: Final = 30.0  # above this mean a Poisson/binomial draw goes to Philox (inversion is slow)

# streams: one per kind of draw, so adding a draw of one kind never shifts another's numbers
TUMBLE: Final = 1  # the phase of a tumbling satellite's spin
SEU: Final = 2  # single-event upsets in a tick
SEL: Final = 3  # latch-up onsets in a tick
SENSOR_NOISE: Final = 4  # noise of a noisy-sensor fault
SEU_BURST: Final = 5  # the uncorrectable share of an injected upset burst


def _fmix_int(x: int) -> int:
    x &= _MASK
    x ^= x >> 33
    x = (x * _M1) & _MASK
    x ^= x >> 33
    x = (x * _M2) & _MASK
    return x ^ (x >> 33)


def fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser over a uint64 array (a bijection; wraps modulo 2^64)."""
    x = x ^ (x >> np.uint64(33))
    x *= np.uint64(_M1)
    x ^= x >> np.uint64(33)
    x *= np.uint64(_M2)
    x ^= x >> np.uint64(33)
    return x


def name_keys(names: Sequence[str]) -> np.ndarray:
    """A 64-bit key per satellite name (BLAKE2b): the satellite's identity for its random streams."""
    return np.fromiter((int.from_bytes(hashlib.blake2b(n.encode(), digest_size=8).digest(), "little")
                        for n in names), dtype=np.uint64, count=len(names))


class SatRandom:
    """Random streams of a set of satellites, keyed by ``seed`` and one uint64 ``keys[i]`` per satellite."""

    def __init__(self, seed: int, keys: np.ndarray) -> None:
        self.seed = int(seed)
        self.keys = np.asarray(keys, dtype=np.uint64)
        self._base = fmix64(self.keys ^ np.uint64(_fmix_int(self.seed * _GOLDEN + 1)))

    @classmethod
    def for_names(cls, seed: int, names: Sequence[str]) -> SatRandom:
        """Streams keyed by satellite name: a satellite keeps its numbers in any catalogue that holds it."""
        return cls(seed, name_keys(names))

    def __len__(self) -> int:
        return int(self.keys.size)

    def draws(self, stream: int, tick: int) -> Draws:
        """The draws of ``stream`` at ``tick`` (every satellite, any number per satellite)."""
        return Draws(self._base, _fmix_int(int(tick) * _GOLDEN + int(stream) * _M2 + 0x632BE59BD9B4E019))


class Draws:
    """The numbers of one (stream, tick) for every satellite: ``index`` picks the k-th number of a satellite."""

    def __init__(self, base: np.ndarray, salt: int) -> None:
        self._base = base
        self._salt = np.uint64(salt)

    def bits(self, rows: np.ndarray | None = None, index: np.ndarray | int = 0) -> np.ndarray:
        """uint64 hash of (satellite ``rows`` (None: all), ``index``)."""
        b = self._base if rows is None else self._base[rows]
        h = fmix64(b ^ self._salt)
        idx = np.atleast_1d(np.asarray(index, dtype=np.uint64))  # arrays wrap silently, numpy scalars warn
        return fmix64(h ^ (idx * np.uint64(_GOLDEN) + np.uint64(_M1)))

    def uniform(self, rows: np.ndarray | None = None, index: np.ndarray | int = 0) -> np.ndarray:
        """Uniform doubles in [0, 1), one per satellite of ``rows`` (None: all) and ``index``."""
        return (self.bits(rows, index) >> np.uint64(11)).astype(np.float64) * _TO_UNIT

    def normal(self, rows: np.ndarray | None = None, index: np.ndarray | int = 0) -> np.ndarray:
        """Standard normal deviates (Box-Muller on the uniforms ``2 index`` and ``2 index + 1``)."""
        idx = np.atleast_1d(np.asarray(index, dtype=np.uint64)) * np.uint64(2)
        u1 = 1.0 - self.uniform(rows, idx)  # (0, 1]: the log is finite
        u2 = self.uniform(rows, idx + np.uint64(1))
        return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)

    def generator(self, row: int, index: int = 0) -> np.random.Generator:
        """numpy's Philox generator keyed by this satellite's (stream, tick, ``index``): exact
        distributions for rare draws no inversion here handles."""
        key = int(self.bits(np.array([row]), index)[0])
        return np.random.Generator(np.random.Philox(key=key))

    def poisson(self, lam: np.ndarray, rows: np.ndarray | None = None, index: int = 0) -> np.ndarray:
        """Poisson counts with means ``lam`` (one per satellite of ``rows``), by inversion of one uniform each."""
        lam = np.asarray(lam, dtype=float)
        u = self.uniform(rows, index)
        k = poisson_inverse(lam, u)
        big = np.flatnonzero(lam > INVERSION_MAX_MEAN)
        all_rows = np.arange(lam.size) if rows is None else np.asarray(rows)
        for j in big:
            k[j] = self.generator(int(all_rows[j]), index).poisson(lam[j])
        return k

    def binomial(self, n: np.ndarray | int, p: float, rows: np.ndarray, index: np.ndarray | int = 0) -> np.ndarray:
        """Binomial counts of ``n`` trials with probability ``p``, one per satellite of ``rows`` (and ``index``)."""
        rows = np.asarray(rows)
        n_arr = np.broadcast_to(np.asarray(n, dtype=np.int64), rows.shape).copy()
        idx = np.broadcast_to(np.asarray(index, dtype=np.int64), rows.shape)
        u = self.uniform(rows, idx)
        k = binomial_inverse(n_arr, float(p), u)
        big = np.flatnonzero(n_arr * min(p, 1.0 - p) > INVERSION_MAX_MEAN)
        for j in big:
            k[j] = self.generator(int(rows[j]), int(idx[j])).binomial(int(n_arr[j]), p)
        return k


def poisson_inverse(lam: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The Poisson(``lam``) quantile of ``u`` (smallest k with CDF(k) > u), int64; exact for
    ``lam`` up to :data:`INVERSION_MAX_MEAN` (callers redraw larger means another way)."""
    lam = np.asarray(lam, dtype=float)
    k = np.zeros(lam.shape, dtype=np.int64)
    p = np.exp(-np.clip(lam, 0.0, None))
    cdf = p.copy()
    active = np.flatnonzero(u >= cdf)
    cap = int(INVERSION_MAX_MEAN * 4 + 50)
    for step in range(1, cap + 1):
        if not active.size:
            break
        k[active] = step
        p[active] *= lam[active] / step
        cdf[active] += p[active]
        active = active[(u[active] >= cdf[active]) & (p[active] > 0.0)]
    return k


def binomial_inverse(n: np.ndarray, p: float, u: np.ndarray) -> np.ndarray:
    """The Binomial(``n``, ``p``) quantile of ``u``, int64 (exact while (1-p)^n does not underflow)."""
    n = np.asarray(n, dtype=np.int64)
    k = np.zeros(n.shape, dtype=np.int64)
    if p <= 0.0:
        return k
    if p >= 1.0:
        return n.copy()
    odds = p / (1.0 - p)
    prob = np.exp(n * np.log1p(-p))
    cdf = prob.copy()
    active = np.flatnonzero((u >= cdf) & (n > 0))
    step = 0
    while active.size:
        step += 1
        k[active] = step
        prob[active] *= (n[active] - step + 1) / step * odds
        cdf[active] += prob[active]
        active = active[(u[active] >= cdf[active]) & (step < n[active]) & (prob[active] > 0.0)]
    return k
