"""Assemble one tick's telemetry arrays, one per schema field, from the models' outputs."""

from __future__ import annotations

import numpy as np

from twin.core import thermal
from twin.core.compute.coupling import ComputeCoupling
from twin.core.faults import FaultBook
from twin.core.network import MeshState
from twin.core.orbit import OrbitState
from twin.core.payload import PayloadOutput, PayloadState, latched_mask, row_sum
from twin.core.power import HEATERS, ISL, PAYLOAD, RADIO, AVIONICS, PowerStep
from twin.core.sat_random import Draws
from twin.schema.codec import CODECS
from twin.schema.telemetry import FIELDS, MODE_LOST

_LOAD_BITS = (1 << np.arange(8, dtype=np.int8))[:5].astype(np.int8)


def build_telemetry(
    *,
    orb: OrbitState,
    alt_m: np.ndarray,
    beta_rad: np.ndarray,
    illum: np.ndarray,
    ps: PowerStep,
    out: PayloadOutput,
    gen_w: np.ndarray,
    p_flux: np.ndarray,
    e_flux: np.ndarray,
    dose_rate: np.ndarray,
    temp_k: np.ndarray,
    soc: np.ndarray,
    dose_rad: np.ndarray,
    seu_total: np.ndarray,
    mode: np.ndarray,
    attitude: np.ndarray,
    payload: PayloadState,
    payload_source: np.ndarray,
    hil_divergence: np.ndarray,
    faults: FaultBook,
    saa_proton_flux_cm2_s: float,
    sensor_noise: Draws,
    net: MeshState | None = None,
    compute: ComputeCoupling | None = None,
) -> dict[str, np.ndarray]:
    """Measured telemetry for every schema field (n,) — sensor faults applied, lost satellites NaN.

    Model outputs of this tick: orbit, altitude [m] (NaN if lost), beta angle [rad], illumination,
    power step, payload output, array power [W], proton/electron flux [1/(cm^2 s)], dose rate
    [rad/s]. Fleet state: node temperatures (n, 5) [K], SoC, total dose [rad], upset count, mode,
    attitude, payload state, payload source and HIL divergence flags, the active faults (whose
    sensor faults draw noise from ``sensor_noise``, this tick's stream), and the SAA flag's proton-flux threshold; ``net``: this
    tick of the network (:func:`net_fields`; None when the twin has no network model); ``compute``:
    the compute-job scheduler after this tick's settle (:func:`compute_fields`; None when compute
    placement is off).
    """
    temp = temp_k
    pay = payload
    n = mode.shape[0]
    lost = mode == MODE_LOST
    shed_mask = np.einsum("ij,j->i", (~ps.load_on).view(np.int8), _LOAD_BITS).astype(np.int64)
    load_total_w = np.einsum("ij->i", ps.load_w)
    speed = np.sqrt(np.einsum("ij,ij->i", orb.v_teme_m_s, orb.v_teme_m_s))
    tm: dict[str, np.ndarray] = {
        "mode": mode,
        "limit_state": np.zeros(n, dtype=np.int8),  # filled in by FDIR's limit check
        "fault_flags": faults.flags,
        "battery_soc": soc,
        "net_power_w": gen_w - load_total_w,
        "payload_util": out.util,
        "payload_temp_k": temp[:, thermal.PAYLOAD],
        "illumination": illum,
        "lat_deg": np.degrees(orb.lat_rad),
        "lon_deg": np.degrees(orb.lon_rad),
        "alt_m": alt_m,
        "speed_m_s": speed,
        "beta_deg": np.degrees(beta_rad),
        "attitude_mode": attitude,
        "sgp4_error": orb.error_code,
        "array_power_w": gen_w,
        "load_power_w": load_total_w,
        "shunt_power_w": ps.shunt_w,
        "battery_power_w": ps.battery.power_w,
        "battery_voltage_v": ps.battery.terminal_v,
        "battery_current_a": ps.battery.current_a,
        "payload_power_w": ps.load_w[:, PAYLOAD],
        "avionics_power_w": ps.load_w[:, AVIONICS],
        "isl_power_w": ps.load_w[:, ISL],
        "radio_power_w": ps.load_w[:, RADIO],
        "heater_power_w": ps.load_w[:, HEATERS],
        "loads_shed": shed_mask,
        "array_strings_failed": faults.array_strings_failed,
        "battery_strings_failed": faults.battery_strings_failed,
        "radiator_temp_k": temp[:, thermal.RADIATOR],
        "battery_temp_k": temp[:, thermal.BATTERY],
        "avionics_temp_k": temp[:, thermal.AVIONICS],
        "array_temp_k": temp[:, thermal.ARRAY],
        "heatpipe_efficiency": faults.heatpipe_eff,
        "radiator_efficiency": faults.radiator_eff,
        "payload_load_setpoint": pay.load_setpoint,
        "payload_power_cap_w": pay.power_cap_w,
        "payload_throttle": out.throttle,
        "payload_throughput_tops": out.throughput_tops,
        "payload_backlog_top": pay.backlog_top,
        "devices_online": out.devices_working,
        "devices_latched": latched_mask(pay.latched),
        "ecc_corrected_total": row_sum(pay.ecc_corrected),
        "ecc_uncorrectable_total": row_sum(pay.ecc_uncorrectable),
        "payload_hung": pay.hung,
        "payload_source": payload_source,
        "hil_divergence": hil_divergence,
        "proton_flux_cm2_s": p_flux,
        "electron_flux_cm2_s": e_flux,
        "dose_rate_rad_s": dose_rate,
        "dose_total_rad": dose_rad,
        "seu_total": seu_total,
        "sel_total": pay.sel_total,
        "in_saa": p_flux > saa_proton_flux_cm2_s,
    } | net_fields(net, n) | compute_fields(compute, n)
    assert len(tm) == len(FIELDS)
    # snapshot: the engine mutates its state arrays in place on the next tick
    for f in FIELDS:
        tm[f.name] = np.array(tm[f.name], dtype=CODECS[f.dtype].numpy, copy=True)
    faults.apply_sensor_faults(tm, sensor_noise)
    if np.any(lost):
        for name in ("lat_deg", "lon_deg", "speed_m_s", "beta_deg"):
            tm[name][lost] = np.nan
    return tm


def net_fields(net: MeshState | None, n: int) -> dict[str, np.ndarray]:
    """The ``net`` packet's fields (n,) from one tick of the mesh.

    ``gw_hops`` is -1 and ``gw_delay_ms`` [ms] NaN where no gateway is reachable (lost satellites
    included: they have no links and see no gateway); ``max_link_util`` [1] and ``throughput_gbps``
    [Gbit/s] come from the mesh's traffic (NaN while it has none). Without a network model
    (``net`` None) nothing is linked or routed: zero links and gateways, -1 hops, NaN values; a
    twin without one does not publish the packet.
    """
    if net is None:
        return {"links_up": np.zeros(n, np.int64), "gateways_visible": np.zeros(n, np.int64),
                "gw_hops": np.full(n, -1, np.int64), "gw_delay_ms": np.full(n, np.nan),
                "max_link_util": np.full(n, np.nan), "throughput_gbps": np.full(n, np.nan)}
    delay_s = net.gw_delay_s
    return {
        "links_up": net.links_up,
        "gateways_visible": net.gateways_visible,
        "gw_hops": net.gw_hops,
        "gw_delay_ms": np.where(np.isfinite(delay_s), delay_s * 1e3, np.nan),
        "max_link_util": net.sat_max_util,
        "throughput_gbps": net.sat_throughput_gbps,
    }


def compute_fields(compute: ComputeCoupling | None, n: int) -> dict[str, np.ndarray]:
    """The ``compute`` packet's fields (n,) from the compute-job scheduler (:meth:`ComputeCoupling.telemetry`).

    Jobs holding a device, the jobs' accelerator power and its battery part [W] over the last tick,
    and per-satellite counters since start (completed, corrupt, upsets that hit a job). Without
    compute placement (``compute`` None) no job runs: zeros everywhere, no NaN; a twin without it
    does not publish the packet.
    """
    if compute is None:
        return {"jobs_running": np.zeros(n, np.int64), "compute_power_w": np.zeros(n),
                "compute_battery_w": np.zeros(n), "jobs_completed_total": np.zeros(n, np.int64),
                "jobs_corrupted_total": np.zeros(n, np.int64), "job_upsets_total": np.zeros(n, np.int64)}
    return compute.telemetry()
