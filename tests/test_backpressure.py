"""Backpressure instead of loss: the twin waits for a stalled broker (nothing refused, lag reported)
or, in shed mode, keeps its pace and sheds per-satellite packets it counts exactly; topic rates."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter

import numpy as np
import pytest

from mqtt_helpers import Recorder, wait_for
from twin.contract.telemetry_encoder import TOPIC_RATES, PacketSchedule, RateError, parse_rates
from twin.core.catalogue import load_catalogue
from twin.core.design import load_design
from twin.core.engine import FleetTwin
from twin.mqtt import MqttSettings
from twin.runtime.backpressure import SHED_ORDER, DeliveryLag, ShedBudget, plan_shed
from twin.runtime.clock import Pacer
from twin.runtime.mqtt_link import LinkSettings, MqttLink
from twin.runtime.mqtt_service import TwinService

pytestmark = pytest.mark.timing  # wall-clock silence and lag: run alone (scripts/test.sh)

P = "orbitwin/v1"


# --- pure parts ---------------------------------------------------------------------------
def test_shed_order_names_every_schema_packet_once():
    from twin.schema.telemetry import PACKETS

    assert sorted(SHED_ORDER) == sorted(p.name for p in PACKETS) and len(set(SHED_ORDER)) == len(SHED_ORDER)


def test_plan_shed_keeps_high_priority_packets_first():
    due = {p: np.arange(10) for p in SHED_ORDER}
    kept, shed = plan_shed(due, 25, tick=3)
    assert kept["hk"].size == 10 and kept["payload"].size == 10 and kept["power"].size == 5
    assert shed == {"power": 5, "compute": 10, "net": 10, "orbit": 10, "thermal": 10, "radiation": 10}
    assert sum(k.size for k in kept.values()) + sum(shed.values()) == 10 * len(SHED_ORDER)
    assert set(kept["power"]) <= set(range(10)) and len(set(kept["power"])) == 5
    # the partly kept window rotates with the tick
    assert not np.array_equal(plan_shed(due, 25, tick=4)[0]["power"], kept["power"])
    assert plan_shed(due, 100, tick=0) == (due, {})


def test_shed_budget_caps_backlog_by_measured_rate_and_recovers():
    now = [0.0]
    b = ShedBudget(max_backlog=1000, budget_s=0.5, clock=lambda: now[0])
    assert b.allowed(backlog=0, acked_total=0) == 1000  # nothing known: up to the limit
    b.published(backlog_after=1000, acked_total=0)
    now[0] = 1.0
    assert b.allowed(backlog=800, acked_total=200) == 0  # 200 msg/s -> 100 messages of budget < backlog
    assert b.rate == pytest.approx(200.0)
    b.published(backlog_after=800, acked_total=200)
    now[0] = 2.0
    b.allowed(backlog=0, acked_total=1000)  # drained: lower bound 800/s, no longer limiting below 2000/s
    assert b.rate == pytest.approx(800.0)
    # a stalled link measured at 0 msg/s does not keep shedding once it has drained
    b.rate = 0.0
    b.published(backlog_after=0, acked_total=1000)
    now[0] = 3.0
    assert b.allowed(backlog=0, acked_total=1000) == 1000 and b.rate is None


def test_shed_budget_leaves_a_slow_step_less_time_to_deliver_in():
    now = [0.0]
    b = ShedBudget(max_backlog=1000, budget_s=0.5, clock=lambda: now[0], floor_s=0.1)
    b.published(backlog_after=1000, acked_total=0)
    now[0] = 1.0
    assert b.allowed(backlog=600, acked_total=400) == 0  # busy throughout: 400 msg/s, 200 of budget < backlog
    assert b.rate == pytest.approx(400.0)
    b.published(backlog_after=600, acked_total=400)
    now[0] = 2.0
    # still 400 msg/s; the tick spent 0.3 s before publishing: (0.5 - 0.3) s x 400 msg/s = 80 of backlog
    assert b.allowed(backlog=20, acked_total=800, elapsed_s=0.3) == 60
    b.published(backlog_after=80, acked_total=800)
    now[0] = 3.0
    # a step longer than the budget still leaves the floor: 0.1 s x 400 msg/s = 40 (190 without the step)
    assert b.allowed(backlog=10, acked_total=1200, elapsed_s=0.9) == 30
    assert b.rate == pytest.approx(400.0)
    b.published(backlog_after=40, acked_total=1200)
    now[0] = 4.0
    # an earlier tick still undelivered after more than the budget: nothing more until it is
    assert b.allowed(backlog=10, acked_total=1600, behind_s=0.6) == 0
    assert b.allowed(backlog=10, acked_total=1600, behind_s=0.4) == 190


def test_delivery_lag_closes_ticks_by_acknowledged_count():
    now = [10.0]
    d = DeliveryLag(clock=lambda: now[0])
    d.mark(5, due_wall=9.0)
    d.mark(9, due_wall=9.5)
    d.delivered(4)
    assert d.ticks == 0 and d.pending_s() == pytest.approx(1.0)
    now[0] = 10.5
    d.delivered(9)
    assert d.ticks == 2 and d.last_s == pytest.approx(1.0) and d.max_s == pytest.approx(1.5)
    assert d.pending_s() == 0.0


def test_rates_cover_summary_and_status():
    rates = parse_rates("hk=2,summary=0.5,status=1")
    sched = PacketSchedule(4, 1.0, rates)
    assert sched.rates["hk"] == 2.0 and "summary" not in sched.rates
    assert [sched.topic_due("summary", k) for k in range(1, 5)] == [False, True, False, True]
    assert sched.topic_period("status") == 1
    assert PacketSchedule(4, 1.0).topic_period("summary") == 1  # default: every tick
    assert PacketSchedule(4, 1.0, {"summary": 0.0}).topic_period("summary") == 0  # never
    with pytest.raises(RateError, match="summary"):
        parse_rates("summary=0.5", topics=False)  # per-satellite rates name packets only
    with pytest.raises(RateError):
        parse_rates("fleet=1")


# --- on a real Mosquitto ---------------------------------------------------------------------
def _service(url: str, count: int, tmp_path, **link: object) -> TwinService:
    twin = FleetTwin(load_catalogue().select(count=count), load_design(), dt_s=1.0, seed=0)
    settings = LinkSettings(state_dir=str(tmp_path), **link)  # type: ignore[arg-type]
    svc = TwinService(twin, MqttLink(MqttSettings(url, keepalive_s=30, session_expiry_s=0), settings))
    svc.link.start()
    return svc


def _recorder(broker) -> Recorder:
    rec = Recorder(broker.host, broker.port, [f"{P}/sat/+/tm/+", f"{P}/fleet/summary", f"{P}/fleet/status",
                                              f"{P}/probe"])
    wait_for(lambda: (rec.publish(f"{P}/probe", {"p": 1}), rec.find(lambda t, p: t == f"{P}/probe"))[1], 10)
    return rec


def _expected(svc: TwinService) -> dict[tuple[str, int], str]:
    """(sat, seq) -> packet of every per-satellite message the schedule made due up to the last tick."""
    seq = np.zeros(svc.twin.n, dtype=np.int64)
    out = {}
    for k in range(1, svc.twin.tick + 1):
        for packet, rows in svc.schedule.due(k).items():
            for i in rows.tolist():
                out[(svc.twin.names[i], int(seq[i]))] = packet
            seq[rows] += 1
    return out


def _received(rec: Recorder) -> set[tuple[str, int]]:
    return {(p["sat"], p["seq"]) for _, p in rec.find(lambda t, p: "/tm/" in t and isinstance(p, dict))}


def _run_with_stall(svc: TwinService, broker, ticks: int, stalled) -> threading.Thread:
    """Run ``ticks`` at x10 in a thread; SIGSTOP the broker after 3 ticks until ``stalled()`` holds."""
    th = threading.Thread(target=svc.run, args=(Pacer(10.0),), kwargs={"duration_s": ticks}, daemon=True)
    th.start()
    wait_for(lambda: svc.twin.tick >= 3, 30)
    broker.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for(stalled, 30)
    finally:
        broker.proc.send_signal(signal.SIGCONT)
    th.join(120)
    assert not th.is_alive()
    return th


def test_wait_mode_publishes_everything_through_a_stalled_broker_and_reports_lag(mosquitto, tmp_path):
    rec = _recorder(mosquitto)
    svc = _service(mosquitto.url, 20, tmp_path, max_backlog=80)
    try:
        def stalled() -> bool:  # the backlog is at its limit and the tick loop waits; let it wait a while
            if not svc.link.waiting:
                return False
            time.sleep(0.6)
            return True

        _run_with_stall(svc, mosquitto, 30, stalled)
        expected = _expected(svc)
        wait_for(lambda: len(_received(rec)) >= len(expected), 30)
        assert _received(rec) == set(expected)
        st = svc.status()
        assert st["mqtt"]["refused_queue_full"] == 0 and svc.link.stats.refused_queue_full == 0
        assert svc.counters["telemetry"] == len(expected) and st["shed"] == {}
        assert svc.last_stats is not None and svc.last_stats.max_lag_s >= 0.5  # the wait is lag
        assert st["max_lag_s"] >= 0.5 and st["backpressure_waits"] >= 1 and st["max_publish_lag_s"] >= 0.5
        # the last status message carries the same account
        final = wait_for(lambda: rec.find(lambda t, p: t == f"{P}/fleet/status" and p["tick"] == svc.twin.tick), 10)
        assert final[-1][1]["max_lag_s"] >= 0.5 and final[-1][1]["mqtt"]["refused_queue_full"] == 0
    finally:
        svc.link.stop()
        svc.twin.close()
        rec.close()


def test_shed_mode_keeps_pace_and_counts_every_gap_per_packet(mosquitto, tmp_path):
    rec = _recorder(mosquitto)
    svc = _service(mosquitto.url, 20, tmp_path, max_backlog=80, overload="shed")
    try:
        shed_before = [0]

        def stalled() -> bool:  # shedding has gone on for a few ticks
            total = sum(svc.out.shed.values())
            if total == 0:
                return False
            if not shed_before[0]:
                shed_before[0] = svc.twin.tick
            return svc.twin.tick >= shed_before[0] + 3

        _run_with_stall(svc, mosquitto, 40, stalled)
        expected = _expected(svc)
        published = svc.counters["telemetry"]
        wait_for(lambda: len(_received(rec)) >= published, 30)
        received = _received(rec)
        missing = Counter(packet for key, packet in expected.items() if key not in received)
        assert received <= set(expected)
        assert dict(missing) == dict(svc.out.shed) and sum(missing.values()) > 0
        assert published + sum(svc.out.shed.values()) == len(expected)
        assert svc.link.stats.refused_queue_full == 0
        final = wait_for(lambda: rec.find(lambda t, p: t == f"{P}/fleet/status" and p["tick"] == svc.twin.tick), 10)
        assert final[-1][1]["shed"] == dict(missing)
    finally:
        svc.link.stop()
        svc.twin.close()
        rec.close()


def test_summary_and_status_rates(mosquitto, tmp_path):
    rec = _recorder(mosquitto)
    twin = FleetTwin(load_catalogue().select(count=3), load_design(), dt_s=1.0, seed=0)
    link = MqttLink(MqttSettings(mosquitto.url, session_expiry_s=0), LinkSettings(state_dir=str(tmp_path)))
    svc = TwinService(twin, link, PacketSchedule(3, 1.0, parse_rates("summary=0.5,status=0")))
    link.start()
    try:
        svc.run(Pacer(None), duration_s=10)
        link.stop()
        summaries = wait_for(lambda: (lambda s: s if len(s) >= 5 else None)(
            rec.find(lambda t, p: t == f"{P}/fleet/summary")), 10)
        assert [p["tick"] for _, p in summaries] == [2, 4, 6, 8, 10]
        assert rec.find(lambda t, p: t == f"{P}/fleet/status") == []
        # the rates given, every other periodic topic at its default
        assert link.birth_extra["rates"] == TOPIC_RATES | {"summary": 0.5, "status": 0.0}
    finally:
        twin.close()
        rec.close()


def test_shed_budget_caps_a_tick_by_the_rate_the_tick_loop_itself_hands_messages_over():
    # a busy machine: the link delivers at once (backlog 0 after every tick), the twin is the slow part
    now = [0.0]
    b = ShedBudget(max_backlog=30_000, budget_s=0.4, clock=lambda: now[0], floor_s=0.1, min_sample=200)
    assert b.allowed(backlog=0, acked_total=0) == 30_000  # nothing known yet
    now[0] = 2.0  # handing 14,000 messages over took 2 s: 7,000 msg/s
    b.published(backlog_after=0, acked_total=14_000)
    assert b.own_rate == pytest.approx(7_000.0) and b.rate is None
    now[0] = 3.0
    # 0.1 s of step already spent: 0.3 s left x 7,000 msg/s
    assert b.allowed(backlog=0, acked_total=14_000, elapsed_s=0.1) == 2_100
    now[0] = 3.3  # the 2,100 kept took 0.3 s: the estimate holds
    b.published(backlog_after=0, acked_total=16_100)
    assert b.own_rate == pytest.approx(7_000.0)
    # a tick with too few messages to measure raises the estimate by a quarter (never stuck low)
    now[0] = 4.0
    b.allowed(backlog=0, acked_total=16_100)
    now[0] = 4.01
    b.published(backlog_after=0, acked_total=16_150)
    assert b.own_rate == pytest.approx(8_750.0)
    # a fast tick loop (quiet machine): no longer limiting once a floor's worth exceeds the backlog limit
    now[0] = 5.0
    b.allowed(backlog=0, acked_total=16_150)
    now[0] = 5.01
    b.published(backlog_after=0, acked_total=56_150)  # 40,000 in 10 ms
    assert b.own_rate is None
    assert b.allowed(backlog=0, acked_total=56_150) == 30_000


# --- the door's acknowledgement count and packets (what the backlog and the lag are computed from) ---
def _lean(protocol):
    import paho.mqtt.client as mqtt

    from twin.mqtt.connection import _LeanClient

    c = _LeanClient(mqtt.CallbackAPIVersion.VERSION2, client_id="unit", protocol=protocol)
    c._sock = object()  # noqa: SLF001 - "connected": packets are built inline, nothing is written here
    return c


def test_door_counts_runs_of_plain_pubacks_exactly():
    import paho.mqtt.client as mqtt

    from twin.mqtt.connection import _LazyInfo

    c = _lean(mqtt.MQTTv5)
    counted = []
    c.on_publish_count = counted.append
    for mid in range(1, 40):
        m = mqtt.MQTTMessage(mid, b"t")
        m.qos, m.info = 1, _LazyInfo(mid)
        c._out_messages[mid] = m  # noqa: SLF001
    c._inflight_messages = 39  # noqa: SLF001
    buf = bytearray()
    for mid in range(1, 20):
        buf += bytes((0x40, 2, mid >> 8, mid & 0xFF))
    buf += b"\xd0\x00"  # a PINGRESP between two runs
    for mid in [*range(20, 40), 999]:  # 999: not ours (already completed), ignored
        buf += bytes((0x40, 2, mid >> 8, mid & 0xFF))
    buf += b"\x40\x02\x00"  # the first 3 bytes of the next PUBACK
    c._rbuf = buf  # noqa: SLF001
    assert c._handle_buffered() == 0  # noqa: SLF001
    assert c._acked_now == 39 and c._inflight_messages == 0 and not c._out_messages  # noqa: SLF001
    assert bytes(c._rbuf) == b"\x40\x02\x00"  # noqa: SLF001 - the partial packet waits for its last byte
    c._sock = None  # noqa: SLF001


@pytest.mark.parametrize("v5", [True, False])
def test_door_builds_publish_packets_inline_as_the_spec_lays_them_out(v5):
    import paho.mqtt.client as mqtt

    c = _lean(mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
    c._max_inflight_messages = 2  # noqa: SLF001 - two go out at once, the third waits for a slot
    payloads = [b"x" * 5, b"y" * 200, b"z" * 20_000]  # remaining lengths of 1, 2 and 3 bytes
    msgs = [(f"a/{k}", p) for k, p in enumerate(payloads)]
    with c._out_message_mutex:  # noqa: SLF001
        c._open_sink()  # noqa: SLF001
        rcs = c._enqueue_plain(msgs, 1, 0, c._batch_info)  # noqa: SLF001
        sent = list(c._sink)  # noqa: SLF001
        c._inflight_messages -= 1  # noqa: SLF001 - one acknowledged: the third takes its slot
        c._refill_plain()  # noqa: SLF001
        sent += c._sink[len(sent):]  # noqa: SLF001
        c._sink = None  # noqa: SLF001

    def expected(mid, topic, payload):
        body = len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big") + (b"\x00" if v5 else b"") + payload
        n, length = len(body), bytearray()
        while True:  # MQTT variable byte integer
            n, byte = n >> 7, n & 0x7F
            length.append(byte | (0x80 if n else 0))
            if not n:
                break
        return bytes((0x32,)) + bytes(length) + body

    assert rcs == [0, 0, 0]
    assert sent == [expected(k + 1, f"a/{k}".encode(), p) for k, p in enumerate(payloads)]
    assert [c._out_messages[k + 1].state for k in range(3)] == [mqtt.mqtt_ms_wait_for_puback] * 3  # noqa: SLF001
    c._sock = None  # noqa: SLF001
