"""The fleet summary's compute keys, defined once: the policy, the numeric figures, and the regions of the
interactive latency percentiles (the continents of the country data).

The compute scheduler groups interactive jobs by the continent of their source city (Natural Earth,
:mod:`twin.core.compute.territory`); the fleet summary carries ``interactive_latency_p50_ms_<region>``
and ``interactive_latency_p99_ms_<region>`` for each, and the dashboards, the AsyncAPI document and
the InfluxDB bridge take the keys from here.
"""

from __future__ import annotations

# the continents of Natural Earth's admin-0 countries (a point at sea takes its nearest country's)
CONTINENTS = ("Africa", "Antarctica", "Asia", "Europe", "North America", "Oceania", "South America")
LATENCY_REGIONS: tuple[str, ...] = tuple(c.lower().replace(" ", "_") for c in CONTINENTS)


def latency_region_keys() -> tuple[str, ...]:
    """``interactive_latency_p50_ms_<region>`` and ``interactive_latency_p99_ms_<region>`` for every region."""
    return tuple(f"interactive_latency_{q}_ms_{r}" for r in LATENCY_REGIONS for q in ("p50", "p99"))


POLICY_KEY = "compute_policy"  # the scheduler's policy: a string field of the fleet point
# the numeric compute figures of the fleet summary (ComputeCoupling.summary produces exactly these)
NUMERIC_KEYS: tuple[str, ...] = (
    "jobs_submitted", "jobs_queued", "jobs_running", "jobs_completed", "jobs_failed", "jobs_rejected",
    "jobs_interactive_completed", "jobs_deadline_missed", "jobs_corrupted", "job_migrations", "job_bytes_moved",
    "compute_battery_wh", "compute_array_wh", "throttled_device_h", "interactive_latency_p50_ms",
    "interactive_latency_p99_ms", *latency_region_keys())
