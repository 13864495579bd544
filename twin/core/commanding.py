"""Commands executed on the fleet: what each telecommand does to the engine's state.

Functions over the engine (:class:`twin.core.engine.FleetTwin`, seen here through the
:class:`CommandedTwin` protocol so this module does not import the engine): a command that has
come due acts on its target satellites' arrays in place and returns its result for the
``command_completed`` event, or raises :class:`CommandError` (``command_failed``). Units as in
the engine: loads 0..1, power in W, temperatures in K, work in tera-operations, times in s of
sim time. Also here: safe-mode entry (by command or by FDIR) and the check a link or gateway
outage fault gets when it is submitted.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from twin.core import payload as pl
from twin.core import thermal
from twin.core.compute.coupling import ComputeCoupling
from twin.core.deployment import Deployment, DeploymentError
from twin.core.design import Design
from twin.core.events import Event, Request
from twin.core.faults import FaultBook, FaultTarget
from twin.core.network import Mesh
from twin.core.shards import ShardMap
from twin.schema.commands import CommandError, Reason
from twin.schema.telemetry import (
    ATT_NADIR_FIXED, ATT_SAFE_SUN, ATT_SUN_TRACK, ATT_TUMBLING, MODE_LOST, MODE_NOMINAL, MODE_SAFE,
)

__all__ = ["CommandedTwin", "check_network_fault", "enter_safe", "execute_command"]

_ATT_BY_NAME = {"sun_track": ATT_SUN_TRACK, "nadir_fixed": ATT_NADIR_FIXED, "safe_sun": ATT_SAFE_SUN}
_SETPOINT_NODE = {"payload": thermal.PAYLOAD, "battery": thermal.BATTERY, "avionics": thermal.AVIONICS}


class CommandedTwin(Protocol):
    """What commands read and change of the engine (:class:`twin.core.engine.FleetTwin`)."""

    design: Design
    index: dict[str, int]
    t_s: float
    mode: np.ndarray
    attitude: np.ndarray
    setpoint_k: np.ndarray
    payload: pl.PayloadState
    faults: FaultBook
    compute: ComputeCoupling | None
    mesh: Mesh | None
    deployment: Deployment
    shard: ShardMap | None
    _events: list[Event]

    @property
    def _gateway_number(self) -> dict[str, int]: ...

    def _emit(self, sat: int, kind: str, name: str, severity: str, **detail: Any) -> None: ...

    def _fault_target(self) -> FaultTarget: ...


def _deployment_command(twin: CommandedTwin, name: str, a: dict[str, Any], s: np.ndarray) -> dict[str, Any]:
    """``launch``, ``raise_orbit`` and ``deorbit`` (:mod:`twin.core.deployment`)."""
    dep = twin.deployment
    try:
        if name == "launch":
            alt = None if a.get("parking_alt_km") is None else a["parking_alt_km"] * 1e3
            rows = dep.launch(s, hold=bool(a.get("hold")), parking_alt_m=alt)
            return {"launched": int(rows.size), "parking_alt_km": round(float(dep.alt_m[rows].min()) / 1e3, 3),
                    "hold": bool(a.get("hold"))}
        if name == "raise_orbit":
            slot = None
            if a.get("slot_of") is not None:
                if a["slot_of"] not in twin.index:
                    raise CommandError(Reason.UNKNOWN_SATELLITE, f"unknown satellite {a['slot_of']!r}", "slot_of")
                slot = float(dep.slot_alt_m[twin.index[a["slot_of"]]])
            rows = dep.raise_to(s, slot)
            return {"raising": int(rows.size), "slot_alt_km": round(float(dep.slot_alt_m[rows].max()) / 1e3, 3)}
        rows = dep.deorbit(s)
        return {"lowering": int(rows.size)}
    except DeploymentError as exc:
        raise CommandError(Reason.NOT_NOW, str(exc), "sat") from None


def check_network_fault(twin: CommandedTwin, name: str, args: dict[str, Any], sats: np.ndarray) -> None:
    """A link or gateway outage names a satellite or gateway of this twin's network."""
    if twin.mesh is None:
        raise CommandError(Reason.NOT_NOW, "the twin runs without its network model ([network] enabled = "
                           "false or --no-network)", "fault")
    if name == "link_outage":
        peer = args["peer"]
        # a shard's mesh is the whole fleet's: the peer may be another shard's satellite
        index, rows = (twin.index, sats) if twin.shard is None else (twin.shard.index, twin.shard.rows[sats])
        if peer not in index:
            raise CommandError(Reason.UNKNOWN_SATELLITE, f"unknown peer satellite {peer!r}", "peer")
        if np.any(rows == index[peer]):
            raise CommandError(Reason.BAD_ARGUMENT, "a link outage needs a peer other than the satellite itself",
                               "peer")
    elif args["gateway"] not in twin._gateway_number:
        raise CommandError(Reason.BAD_ARGUMENT, f"unknown gateway {args['gateway']!r} (the names of the "
                           "ground-site file, e.g. 'Adelanto, CA')", "gateway")


def execute_command(twin: CommandedTwin, req: Request) -> dict[str, Any]:
    """Carry out a due command on its satellites (lost ones skipped); its result, or :class:`CommandError`."""
    s, a, p = req.sats, req.args, twin.payload
    if req.name == "set_watch":  # the runtime's telemetry policy changes when it sees this complete
        return {"action": a["action"], "sats": int(s.size)}
    lost = twin.mode[s] == MODE_LOST
    if np.all(lost):
        raise CommandError(Reason.NOT_NOW, "satellite is lost (no valid orbit)", "sat")
    s = s[~lost]
    name = req.name
    if name in ("set_payload_load", "submit_jobs") and twin.compute is not None:
        raise CommandError(Reason.NOT_NOW, "compute placement is on (orbitwin run --compute): the placed jobs "
                                           "own the payloads' load", "load" if name == "set_payload_load"
                           else "work_top")
    if name in ("set_payload_load", "submit_jobs", "throttle", "set_power_cap", "power_cycle"):
        for i in s:
            backend = p.backends.get(int(i))
            if backend is not None:
                backend.command(name, a)
    if name == "set_payload_load":
        safe = twin.mode[s] == MODE_SAFE
        if np.all(safe):
            raise CommandError(Reason.NOT_NOW, "payload is off in safe mode", "load")
        p.load_setpoint[s[~safe]] = a["load"]
        return {"load": a["load"], "applied": int((~safe).sum()), "skipped_safe": int(safe.sum())}
    if name == "set_power_cap":
        p.power_cap_w[s] = a["power_w"]
        return {"power_w": a["power_w"], "applied": int(s.size)}
    if name == "throttle":
        p.cmd_throttle[s] = a["factor"]
        return {"factor": a["factor"], "applied": int(s.size)}
    if name == "submit_jobs":
        p.backlog_top[s] += a["work_top"]
        return {"backlog_top": float(p.backlog_top[s].max()), "applied": int(s.size)}
    if name == "power_cycle":
        pl.power_cycle(p, twin.design.payload, s, a["device"])
        return {"device": a["device"], "off_s": twin.design.payload.power_cycle_s, "applied": int(s.size)}
    if name == "enter_safe_mode":
        enter_safe(twin, s, "command")
        return {"mode": "safe", "applied": int(s.size)}
    if name == "leave_safe_mode":
        twin.mode[s] = MODE_NOMINAL
        twin.attitude[s] = np.where(twin.faults.tumbling[s], ATT_TUMBLING, ATT_SUN_TRACK)
        return {"mode": "nominal", "applied": int(s.size)}
    if name == "set_heater_setpoint":
        twin.setpoint_k[s, _SETPOINT_NODE[a["node"]]] = a["temp_k"]
        return {"node": a["node"], "temp_k": a["temp_k"], "applied": int(s.size)}
    if name == "set_attitude_mode":
        if np.any(twin.faults.tumbling[s]):
            raise CommandError(Reason.NOT_NOW, "attitude control has lost sun pointing", "mode")
        twin.attitude[s] = _ATT_BY_NAME[a["mode"]]
        return {"mode": a["mode"], "applied": int(s.size)}
    if name in ("run_job", "set_compute_policy"):
        if twin.compute is None:
            raise CommandError(Reason.NOT_NOW, "compute placement is off (orbitwin run --compute POLICY)",
                               "command")
        if name == "set_compute_policy":
            previous, twin.compute.scheduler.policy = twin.compute.scheduler.policy, a["policy"]
            return {"policy": a["policy"], "previous": previous}
        return twin.compute.submit_job(a, s, twin.t_s, twin.index)
    if name == "clear_fault":
        result, caused = twin.faults.clear(a["fault_id"], twin._fault_target())
        twin._events += caused
        return result
    if name in ("launch", "raise_orbit", "deorbit"):
        return _deployment_command(twin, name, a, s)
    raise CommandError(Reason.UNKNOWN_COMMAND, f"unknown command {name!r}", "command")  # pragma: no cover


def enter_safe(twin: CommandedTwin, sats: np.ndarray, why: str) -> None:
    """Put the nominal ones of ``sats`` in safe mode (safe-sun attitude unless tumbling), one event each."""
    new = sats[twin.mode[sats] == MODE_NOMINAL]
    twin.mode[new] = MODE_SAFE
    twin.attitude[new] = np.where(twin.faults.tumbling[new], ATT_TUMBLING, ATT_SAFE_SUN)
    for i in new:
        twin._emit(int(i), "fdir", "safe_mode_entered", "critical", reason=why)
