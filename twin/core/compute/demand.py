"""Seeded demand: jobs from ground endpoints, diurnal in each city's local solar time, weighted by population.

Each kind of job arrives as a Poisson process per city with rate
``rate_per_s[kind] * weight[city] * (1 + amplitude * cos(2 pi (local_hour - peak_hour) / 24))``
where ``weight`` sums to 1 over the cities and the local hour is the mean solar time
(UTC + longitude / 15 deg per hour; the equation of time, +-16 min, is ignored). The shipped city
list is sorted by population without the figures, so the default weight is Zipf's rank-size rule
(1 / rank). Job sizes are lognormal around medians. Figures and their basis:
docs/physics.md#compute-jobs. Pure numpy; the same seed and windows give the same jobs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from twin.core.compute.jobs import GROUND, JobBatch, JobKind
from twin.core.network.ground import GroundSites

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class KindDemand:
    """Arrivals and sizes of one kind of job (medians; lognormal spread ``sigma`` of the work)."""

    rate_per_s: float  # 1/s over all cities, daily mean
    peak_local_hour: float  # h, local solar time of the daily peak
    work_dev_s: float  # device-seconds, median
    sigma: float  # lognormal sigma of the work (1)
    input_bytes: float  # B
    output_bytes: float  # B
    deadline_after_s: float  # s after submission (inf: none)
    latency_bound_s: float  # s round trip (inf: none)
    state_bytes: float = 0.0  # B, checkpoint size (0: not checkpointable)
    checkpoint_every_dev_s: float = 0.0  # device-seconds between checkpoints


@dataclass(frozen=True)
class DemandParams:
    """Demand of every kind; defaults are estimates (docs/physics.md#compute-jobs)."""

    interactive: KindDemand = KindDemand(20.0, 20.0, 0.05, 0.5, 1e5, 1e4, np.inf, 0.15)
    batch: KindDemand = KindDemand(8.0, 14.0, 900.0, 0.8, 5e9, 5e7, 6 * 3600.0, np.inf)
    checkpoint: KindDemand = KindDemand(0.4, 14.0, 4 * 3600.0, 0.3, 1e9, 1e9, 24 * 3600.0, np.inf,
                                        state_bytes=2e10, checkpoint_every_dev_s=600.0)
    diurnal_amplitude: float = 0.5  # 1: peak twice the mean, 0: flat

    def kinds(self) -> tuple[tuple[JobKind, KindDemand], ...]:
        return ((JobKind.INTERACTIVE, self.interactive), (JobKind.BATCH, self.batch),
                (JobKind.CHECKPOINT, self.checkpoint))

    def scaled(self, factor: float) -> DemandParams:
        """The same demand with every arrival rate times ``factor``."""
        from dataclasses import replace

        return replace(self, interactive=replace(self.interactive, rate_per_s=self.interactive.rate_per_s * factor),
                       batch=replace(self.batch, rate_per_s=self.batch.rate_per_s * factor),
                       checkpoint=replace(self.checkpoint, rate_per_s=self.checkpoint.rate_per_s * factor))


def zipf_weights(n: int, exponent: float = 1.0) -> F64:
    """Weights 1/rank^exponent of n cities sorted by population, summing to 1."""
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    out: F64 = w / w.sum()
    return out


def diurnal_factor(local_hour: ArrayLike, peak_hour: float, amplitude: float) -> F64:
    """Rate over its daily mean at each local solar hour: 1 + amplitude cos(2 pi (h - peak) / 24)."""
    h = np.asarray(local_hour, dtype=np.float64)
    out: F64 = 1.0 + amplitude * np.cos(2.0 * np.pi * (h - peak_hour) / 24.0)
    return out


class DemandGenerator:
    """Jobs arriving from ``cities`` between two sim times; seeded.

    ``utc_hour_at_zero``: UTC hour of day at sim time 0 (fractional); ``weights``: per city (default
    :func:`zipf_weights`).
    """

    def __init__(self, cities: GroundSites, params: DemandParams | None = None, *, seed: int = 0,
                 utc_hour_at_zero: float = 0.0, weights: ArrayLike | None = None) -> None:
        self.cities = cities
        self.params = params or DemandParams()
        self.rng = np.random.default_rng(seed)
        self.utc0_h = float(utc_hour_at_zero)
        w = zipf_weights(len(cities)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(cities),) or np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
            raise ValueError("weights must be one finite non-negative number per city, not all zero")
        self.weights = w / w.sum()

    def local_hour(self, t_s: float) -> F64:
        """Mean local solar hour of every city at sim time ``t_s``."""
        out: F64 = np.mod(self.utc0_h + t_s / 3600.0 + self.cities.lon_deg / 15.0, 24.0)
        return out

    def expected_per_s(self, t_s: float) -> F64:
        """Expected arrivals per second (kinds, cities) at ``t_s``."""
        h = self.local_hour(t_s)
        p = self.params
        out: F64 = np.stack([k.rate_per_s * self.weights * diurnal_factor(h, k.peak_local_hour, p.diurnal_amplitude)
                             for _, k in p.kinds()])
        return out

    def between(self, t0_s: float, t1_s: float) -> JobBatch:
        """Jobs submitted in [t0_s, t1_s): Poisson counts at the window's mid-point rate, times uniform."""
        if not t1_s > t0_s:
            return JobBatch.empty()
        rate = self.expected_per_s(0.5 * (t0_s + t1_s))
        counts = self.rng.poisson(rate * (t1_s - t0_s))
        parts: list[JobBatch] = []
        for (kind, k), per_city in zip(self.params.kinds(), counts):
            total = int(per_city.sum())
            if total == 0:
                continue
            city = np.repeat(np.arange(per_city.size), per_city)
            t = self.rng.uniform(t0_s, t1_s, total)
            work = k.work_dev_s * np.exp(k.sigma * self.rng.standard_normal(total))
            parts.append(JobBatch.of(
                submit_s=t, kind=int(kind), work_dev_s=work, input_bytes=k.input_bytes, output_bytes=k.output_bytes,
                state_bytes=k.state_bytes, checkpoint_every_dev_s=k.checkpoint_every_dev_s,
                deadline_s=t + k.deadline_after_s, latency_bound_s=k.latency_bound_s, src_kind=GROUND, src=city,
                dst_kind=GROUND, dst=city))
        if not parts:
            return JobBatch.empty()
        out = parts[0]
        for b in parts[1:]:
            out = out.concat(b)
        return out
