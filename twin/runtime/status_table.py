"""A live status table of the fleet for the terminal."""

from __future__ import annotations

import time
from typing import Any, TextIO

import numpy as np

from twin.core.ephemeris import jd_to_datetime
from twin.schema.telemetry import LIMIT_RED, LIMIT_YELLOW, MODE_LOST, MODE_NOMINAL, MODE_SAFE


def fleet_summary(twin) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Fleet-wide counts and totals from the current telemetry."""
    tm = twin.tm
    live = twin.mode != MODE_LOST
    return {
        "sats": twin.n,
        "nominal": int(np.sum((twin.mode == MODE_NOMINAL) & (tm["limit_state"] == 0))),
        "yellow": int(np.sum(live & (tm["limit_state"] == LIMIT_YELLOW))),
        "red": int(np.sum(live & (tm["limit_state"] == LIMIT_RED))),
        "safe": int(np.sum(twin.mode == MODE_SAFE)),
        "lost": int(np.sum(~live)),
        "sunlit": int(np.sum(live & (tm["illumination"] > 0.5))),
        "in_saa": int(np.sum(live & tm["in_saa"])),
        "array_power_mw": float(np.nansum(tm["array_power_w"][live]) / 1e6),
        "payload_power_mw": float(np.nansum(tm["payload_power_w"][live]) / 1e6),
        "throughput_eops": float(np.nansum(tm["payload_throughput_tops"][live]) / 1e6),
        "mean_soc": float(np.nanmean(tm["battery_soc"][live])) if np.any(live) else float("nan"),
        "latched": int(np.sum(tm["devices_latched"][live] != 0)),
    }


def render(twin, step_ms: float, speed_achieved: float, lag_s: float, rows: int = 12, events: int = 0) -> str:  # type: ignore[no-untyped-def]
    """The table as text: fleet summary, then the first ``rows`` satellites."""
    s = fleet_summary(twin)
    when = jd_to_datetime(twin.now_jd).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        f"Orbitwin  sim {when}  t={twin.t_s:9.1f} s  tick {twin.tick}  dt {twin.dt_s:g} s  "
        f"step {step_ms:6.1f} ms  speed x{speed_achieved:6.1f}  lag {lag_s:5.2f} s  events {events}",
        f"sats {s['sats']}  nominal {s['nominal']}  yellow {s['yellow']}  red {s['red']}  safe {s['safe']}  "
        f"lost {s['lost']}  sunlit {s['sunlit']}  in SAA {s['in_saa']}  latched {s['latched']}",
        f"array {s['array_power_mw']:.2f} MW  payload {s['payload_power_mw']:.2f} MW  "
        f"compute {s['throughput_eops']:.2f} EOPS  mean SoC {s['mean_soc']:.3f}",
        "",
        f"{'satellite':<18}{'mode':>8}{'lim':>5}{'lat':>8}{'lon':>9}{'alt km':>8}{'sun':>5}"
        f"{'SoC':>6}{'pay K':>7}{'util':>6}{'rad/h':>8}",
    ]
    tm = twin.tm
    modes = {0: "nominal", 1: "safe", 2: "lost"}
    for i in range(min(rows, twin.n)):
        lines.append(
            f"{twin.names[i][:17]:<18}{modes[int(twin.mode[i])]:>8}{int(tm['limit_state'][i]):>5}"
            f"{tm['lat_deg'][i]:8.2f}{tm['lon_deg'][i]:9.2f}{tm['alt_m'][i] / 1e3:8.1f}"
            f"{tm['illumination'][i]:5.2f}{tm['battery_soc'][i]:6.3f}{tm['payload_temp_k'][i]:7.1f}"
            f"{tm['payload_util'][i]:6.2f}{tm['dose_rate_rad_s'][i] * 3600:8.4f}"
        )
    return "\n".join(lines)


class StatusPrinter:
    """Prints :func:`render` to ``out`` every ``refresh_s`` wall seconds, as a run loop's ``on_tick``.

    Without an MQTT service it drains the engine's events itself (counting them); with one
    (``service``, set once it exists) it shows the service's event count and its MQTT counters.
    ``tty`` clears the screen before each table; otherwise tables follow each other.
    """

    def __init__(self, out: TextIO, *, rows: int = 12, refresh_s: float = 1.0, tty: bool = False) -> None:
        self.out, self.rows, self.refresh_s, self.tty = out, rows, refresh_s, tty
        self.service: Any = None
        self.events = 0
        self._last_wall_s = 0.0
        self._last_sim_s = 0.0

    def on_tick(self, twin: Any, stats: Any) -> None:
        """Count events; print the table when ``refresh_s`` has passed (never when it is <= 0)."""
        if self.service is None:
            self.events += len(twin.drain_events())
        now = time.monotonic()
        if self.refresh_s <= 0 or now - self._last_wall_s < self.refresh_s:
            return
        speed = (twin.t_s - self._last_sim_s) / (now - self._last_wall_s) if self._last_wall_s else 0.0
        self._last_wall_s, self._last_sim_s = now, twin.t_s
        svc = self.service
        events = svc.counters["events"] if svc is not None else self.events
        text = render(twin, stats.last_step_s * 1e3, speed, stats.lag_s, self.rows, events)
        if svc is not None:
            st = svc.status()["mqtt"]
            out = svc.out
            text += (f"\nmqtt {svc.link.broker.redacted_url}  connected {st['connected']}  bseq {st['bseq']}  "
                     f"published {st['published']}  outstanding {st['outstanding']}  "
                     f"refused {st['refused_queue_full']}  requests {svc.counters['requests']}  "
                     f"rejected {svc.counters['rejected']}"
                     f"\nlink  overload {out.overload}  max backlog {out.max_backlog}  "
                     f"publish lag {svc.link.delivery.last_s:5.2f} s  waited {out.wait_s_total:.1f} s  "
                     f"shed {sum(out.shed.values())}")
        print(("\x1b[H\x1b[2J" if self.tty else "") + text + ("" if self.tty else "\n"), file=self.out, flush=True)
