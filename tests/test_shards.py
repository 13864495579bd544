"""Shards: the partition keeps planes whole, and shards step their satellites exactly as one twin does."""

from __future__ import annotations

import numpy as np
import pytest

from twin.core.catalogue import load_catalogue
from twin.core.network.shells import elements_from_catalogue, group_planes
from twin.core.shards import ShardSpec, fleet_partition, partition
from twin.runtime.run_loop import FleetOptions, build_twin


def test_shard_spec_parses_k_of_n_and_refuses_the_rest() -> None:
    assert ShardSpec.parse("2/4") == ShardSpec(2, 4) and ShardSpec.parse(" 1 / 1 ").label == "1/1"
    for bad in ("0/2", "3/2", "1/0", "a/b", "1", "-1/2", ""):
        with pytest.raises(ValueError, match="K/N"):
            ShardSpec.parse(bad)


@pytest.mark.parametrize("count", [2, 3, 7])
def test_partition_keeps_planes_whole_contiguous_and_balanced(count: int) -> None:
    cat = load_catalogue()
    planes = group_planes(elements_from_catalogue(cat, cat.median_epoch_jd()))
    owner = partition(planes, count)
    sizes = np.bincount(owner, minlength=count)
    assert sizes.sum() == len(cat) and sizes.min() > 0
    in_plane = planes.plane >= 0
    for p in np.unique(planes.plane[in_plane]):  # a plane never straddles two shards
        assert np.unique(owner[planes.plane == p]).size == 1
    # shards are runs of consecutive planes: the shard number never decreases along the plane order
    plane_owner = np.array([owner[planes.plane == p][0] for p in range(planes.n_planes)])
    assert np.all(np.diff(plane_owner) >= 0)
    biggest_plane = np.bincount(planes.plane[in_plane]).max()
    assert sizes.max() - sizes.min() <= 2 * biggest_plane  # balanced to within a plane either side
    np.testing.assert_array_equal(fleet_partition(cat, cat.median_epoch_jd(), count), owner)


def test_partition_refuses_more_shards_than_units() -> None:
    cat = load_catalogue().select(count=3)
    with pytest.raises(ValueError, match="cannot"):
        fleet_partition(cat, cat.median_epoch_jd(), 4)


def _inject(twin: object, names: list[str]) -> None:
    """The same faults in every run; a shard gets those of its own satellites."""
    tw = twin  # FleetTwin
    for k, name in enumerate(names):
        if name not in tw.index:  # type: ignore[attr-defined]
            continue
        tw.submit("fault", "sensor_noise", {"field": "battery_soc", "sigma": 0.01}, name, at_s=60.0)  # type: ignore[attr-defined]
        if k % 2 == 0:
            tw.submit("fault", "sun_pointing_loss", {}, name, at_s=120.0 + 30 * k)  # type: ignore[attr-defined]
    tw.submit("fault", "seu_burst", {"count": 40}, np.arange(tw.n), at_s=90.0)  # type: ignore[attr-defined]
    tw.submit("fault", "seu_burst", {"count": 2000}, np.arange(tw.n), at_s=150.0)  # type: ignore[attr-defined]


def test_two_shards_step_exactly_as_the_single_twin() -> None:
    """Same seed: every telemetry field and event of every satellite is identical, whichever process
    steps it (the per-satellite random streams; SEU, SEL, sensor noise, bursts and tumbling all drawn)."""
    opts = FleetOptions(count=300, network=False, seed=5, dt_s=30.0)
    single = build_twin(opts)
    shards = [build_twin(FleetOptions(count=300, network=False, seed=5, dt_s=30.0, shard=f"{k}/2")) for k in (1, 2)]
    assert sorted(shards[0].names + shards[1].names) == sorted(single.names)
    assert {shards[0].n, shards[1].n} != {0}
    faulty = [single.names[i] for i in (3, 50, 151, 299)]
    for tw in (single, *shards):
        assert tw.now_jd == single.now_jd
        _inject(tw, faulty)
    events: dict[str, list[tuple[float, str, str, str]]] = {"single": [], "shards": []}
    for _ in range(240):  # 2 h of sim time at 30 s
        single.step()
        rows = {name: i for i, name in enumerate(single.names)}
        for tw in shards:
            tw.step()
            idx = np.array([rows[n] for n in tw.names])
            for field, values in tw.tm.items():
                np.testing.assert_array_equal(values, single.tm[field][idx], err_msg=f"{field} at t={tw.t_s}")
            events["shards"] += [(e.t_s, tw.names[e.sat], e.kind, e.name) for e in tw.drain_events() if e.sat >= 0]
        events["single"] += [(e.t_s, single.names[e.sat], e.kind, e.name) for e in single.drain_events() if e.sat >= 0]
    assert sorted(events["shards"]) == sorted(events["single"])
    kinds = {k for _, _, k, _ in events["single"]}
    assert {"seu", "fault"} <= kinds  # the random paths were exercised
    assert int(single.seu_total.sum()) > 0 and np.any(single.attitude != single.attitude[0])


def test_shard_refuses_compute_placement_and_a_shard_with_the_mesh_waits_for_its_exchange() -> None:
    with pytest.raises(ValueError, match="--compute"):
        build_twin(FleetOptions(count=100, shard="1/2", network=False, compute_policy="nearest"))
    tw = build_twin(FleetOptions(count=100, shard="1/2"))  # the mesh: the whole fleet's, not stepped yet
    assert tw.mesh is not None and tw.tm == {} and tw.shard is not None
    with pytest.raises(RuntimeError, match="mesh exchange"):
        tw.start()


def test_bench_shards_reports_the_ratio_and_identical_telemetry() -> None:
    from orbitwin.bench.shards import bench_shards

    seen: list[float] = []
    r = bench_shards(count=300, shards=2, steps=3, warmup=1, progress=lambda done, total: seen.append(done))
    assert r["identical_telemetry"] is True and r["sats_compared"] == 300
    single, piped, sharded = r["configs"]
    assert single["processes"] == piped["processes"] == 1 and sharded["processes"] == 2
    assert sum(p["sats"] for p in sharded["per_process"]) == 300
    assert r["speedup_vs_one_process"] == pytest.approx(sharded["sat_steps_per_s"] / single["sat_steps_per_s"], rel=1e-2)
    assert seen == [1, 2, 3]
    physics = bench_shards(count=150, shards=2, steps=2, warmup=1, encode=False)
    assert physics["telemetry_encoded"] is False and physics["identical_telemetry"] is True
    assert all(c["messages_per_s"] == 0 for c in physics["configs"])
