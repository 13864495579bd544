"""Data sovereignty (issue 16): a job with a jurisdiction is processed only above it and downlinked only
through its gateways, by construction, checked against the exact 1:110m polygons.

The track test is checked with hypothesis (whenever a tick's ground track is allowed, every point of
it is inside the territory); the engine is then run with jobs in France, the United States and the
EU, and every tick in which such a job made progress is checked point by point along the satellite's
real ground track, and every result's gateway against the territory.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.core.catalogue import load_catalogue
from twin.core.compute.jobs import JobState
from twin.core.compute.sovereignty import SAMPLE_KM, TrackTerritory, erode
from twin.core.compute.territory import Jurisdiction
from twin.core.constants import R_EARTH_M
from twin.core.design import load_design
from twin.core.engine import FleetTwin
from twin.core.network import load_gateways
from twin.core.orbit import geodetic
from twin.schema.commands import CommandError

R = R_EARTH_M + 550e3
GATEWAYS = load_gateways()
SPECS = {"FRA": ["FRA"], "USA": ["USA"], "EU": ["EU"], "box": {"polygon": [[40.0, -5.0], [40.0, 10.0], [50.0, 10.0],
                                                                            [50.0, -5.0]]}}
TERRITORIES = {k: TrackTerritory(Jurisdiction.parse(v), GATEWAYS) for k, v in SPECS.items()}
CENTRES = {"FRA": (46.5, 2.5), "USA": (39.0, -98.0), "EU": (48.0, 10.0), "box": (45.0, 2.5)}


def _ecef(lat_deg: float, lon_deg: float, r_m: float = R) -> np.ndarray:
    la, lo = math.radians(lat_deg), math.radians(lon_deg)
    return r_m * np.array([math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la)])


def _track_inside(t: TrackTerritory, a_m: np.ndarray, b_m: np.ndarray, samples: int = 200) -> bool:
    f = np.linspace(0.0, 1.0, samples)[:, None]
    lat, lon, _ = geodetic(a_m[None, :] + f * (b_m - a_m)[None, :])
    return bool(np.all(t.jurisdiction.contains_exact(np.degrees(lat), np.degrees(lon))))


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(SPECS)), dlat=st.floats(-12.0, 12.0), dlon=st.floats(-20.0, 20.0),
       heading=st.floats(0.0, 2 * math.pi), dt_s=st.sampled_from([1.0, 10.0, 30.0]))
def test_an_allowed_track_is_inside_the_territory_everywhere(name, dlat, dlon, heading, dt_s):
    t = TERRITORIES[name]
    lat0, lon0 = CENTRES[name]
    a = _ecef(lat0 + dlat, lon0 + dlon)
    up = a / np.linalg.norm(a)
    east = np.cross([0.0, 0.0, 1.0], up)
    east /= np.linalg.norm(east)
    north = np.cross(up, east)
    b = a + 7600.0 * dt_s * (math.cos(heading) * north + math.sin(heading) * east)
    if t.allowed_m(a[None, :], b[None, :])[0]:
        assert _track_inside(t, a, b)


def test_the_track_test_is_not_trivially_false():
    """Most short tracks well inside a large territory are allowed (the margin costs about a cell)."""
    rng = np.random.default_rng(4)
    t = TERRITORIES["USA"]
    lat = rng.uniform(34.0, 44.0, 400)
    lon = rng.uniform(-110.0, -85.0, 400)
    a = np.stack([_ecef(x, y) for x, y in zip(lat, lon)])
    b = a + rng.normal(0.0, 1.0, a.shape) / np.sqrt(3.0) * 7600.0 * 10.0
    assert np.mean(t.allowed_m(a, b)) > 0.9
    assert t.allowed_m(a, None).sum() >= t.allowed_m(a, b).sum()  # a track is never freer than its point


def test_erosion_keeps_only_cells_whose_neighbourhood_is_allowed():
    mask = np.zeros((720, 1440), bool)
    mask[400:410, 100:110] = True
    out = erode(mask, 0.5 * SAMPLE_KM + 0.2)
    rows, cols = np.nonzero(out)
    assert rows.min() == 401 and rows.max() == 408 and cols.min() == 101 and cols.max() == 108
    with pytest.raises(ValueError):
        erode(mask, 30.0)  # a margin of a cell or more is beyond what one-cell erosion guarantees


def test_only_gateways_inside_are_used_and_none_means_no_downlink():
    t = TERRITORIES["EU"]
    names = [GATEWAYS.names[i] for i in t.gateway_index]
    assert names and all(t.jurisdiction.gateways_allowed(GATEWAYS.lat_deg[t.gateway_index],
                                                         GATEWAYS.lon_deg[t.gateway_index]))
    assert "Adelanto, CA" not in names
    gw, dist = t.downlink(_ecef(48.0, 10.0))
    assert gw in t.gateway_index and 0 < dist < 3000e3
    none = TrackTerritory(Jurisdiction.parse(["MNG"]), GATEWAYS)
    assert none.downlink(_ecef(47.0, 105.0)) == (-1, math.inf)


@pytest.fixture(scope="module")
def fleet_run():
    """A quarter of the fleet (every 4th satellite), dt 10 s, 20 min, aware policy, no background demand; jobs
    bound to France, the United States and the EU, and one with no jurisdiction. Each tick, the jobs' progress
    and the sub-satellite points at the tick's start and end are recorded."""
    cat = load_catalogue()
    cat = cat.subset(np.arange(0, len(cat), 4))
    twin = FleetTwin(cat, load_design(), dt_s=10.0, seed=5, network=False, compute_policy="aware",
                     compute_demand_scale=0.0)
    jobs = [("FRA", dict(kind="batch", work_dev_s=900.0, input_bytes=2e9, source="city:Paris", deadline_s=7200.0)),
            ("USA", dict(kind="checkpoint", work_dev_s=900.0, state_bytes=1e9, checkpoint_every_dev_s=60.0,
                         source="city:Chicago")),
            ("EU", dict(kind="batch", work_dev_s=300.0, source="city:Madrid")),
            ("EU", dict(kind="interactive", work_dev_s=0.05, latency_bound_ms=400.0, source="city:Madrid")),
            (None, dict(kind="batch", work_dev_s=300.0, source="city:Paris"))]
    for jur, args in jobs:
        twin.submit("command", "run_job", args | ({"jurisdiction": jur} if jur else {}), "*")
    sched = twin.compute.scheduler
    c = sched.jobs.cols
    checked = 0
    progressed: dict[int, float] = {}
    violations: list[str] = []
    prev_pos = None
    events = []
    for _ in range(120):
        before = {int(c["id"][r]): float(c["done_dev_s"][r]) for r in sched.jobs.active_rows()}
        twin.step()
        lat, lon, alt = (np.asarray(twin.tm[k], dtype=float) for k in ("lat_deg", "lon_deg", "alt_m"))
        end_pos = _positions(lat, lon, alt)
        for r in sched.jobs.active_rows():
            jid = int(c["id"][r])
            z = int(c["zone"][r])
            gained = float(c["done_dev_s"][r]) - before.get(jid, 0.0)
            if z < 0 or gained <= 0 or sched.zones[z].territory is None:
                continue
            s = int(c["sat"][r])
            t = sched.zones[z].territory
            checked += 1
            progressed[jid] = progressed.get(jid, 0.0) + gained
            if prev_pos is not None and not _track_inside(t, prev_pos[s], end_pos[s]):
                violations.append(f"job {jid} on satellite {s} at t={twin.t_s}")
        events += sched.drain_events()
        prev_pos = end_pos
    return twin, events, checked, progressed, violations


def _positions(lat_deg: np.ndarray, lon_deg: np.ndarray, alt_m: np.ndarray) -> np.ndarray:
    from twin.core.network.geometry import geodetic_to_itrs
    pos, _ = geodetic_to_itrs(lat_deg, lon_deg, alt_m)
    return pos


def test_jobs_with_a_jurisdiction_run_only_above_it_in_the_engine(fleet_run):
    twin, events, checked, progressed, violations = fleet_run
    assert not violations
    assert checked >= 20 and len(progressed) >= 2  # not vacuous: jurisdiction jobs did run, tick after tick
    handovers = [e for e in events if e.what == "requeued" and e.detail["reason"] == "leaving_jurisdiction"]
    assert handovers, "a satellite crosses France in minutes: the job must have moved with its progress"
    for e in handovers:
        assert e.detail["resume_from_dev_s"] >= 0


def test_results_go_down_only_through_gateways_in_the_jurisdiction(fleet_run):
    twin, events, *_ = fleet_run
    sched = twin.compute.scheduler
    ended = [e for e in events if e.what == "ended" and e.detail["state"] == "completed"]
    with_gw = [e for e in ended if e.detail["gateway"] >= 0]
    assert with_gw, "the EU jobs complete within 20 min and name their gateway"
    for e in with_gw:
        gw = e.detail["gateway"]
        territories = [z.territory for z in sched.zones if z.territory is not None]
        assert any(gw in t.gateway_index for t in territories)
    free = [e for e in ended if e.detail["gateway"] < 0]
    assert free, "the job without a jurisdiction completes too, with no gateway constraint"
    assert all(e.detail["state"] != JobState.FAILED.name.lower() for e in ended)


def test_a_jurisdiction_without_a_gateway_or_unknown_is_refused():
    twin = FleetTwin(load_catalogue().subset(np.arange(20)), load_design(), dt_s=10.0, network=False,
                     compute_policy="aware", compute_demand_scale=0.0)
    for spec, words in (("MNG", "no gateway"), ("XXX", "XXX"), ("EU,Atlantis", "Atlantis")):
        with pytest.raises(CommandError) as exc:
            twin.compute.submit_job({"kind": "batch", "work_dev_s": 1.0, "input_bytes": 0.0, "output_bytes": 0.0,
                                     "state_bytes": 0.0, "checkpoint_every_dev_s": 0.0, "source": "city:Paris",
                                     "jurisdiction": spec}, np.arange(20), 0.0, twin.index)
        assert exc.value.field == "jurisdiction" and words in exc.value.message


def test_a_configured_polygon_is_a_jurisdiction_jobs_can_name(tmp_path):
    from twin.runtime.run_loop import FleetOptions, build_twin, load_jurisdictions

    good = tmp_path / "j.toml"
    good.write_text('[germany-box]\npolygon = [[47.0, 5.0], [47.0, 16.0], [55.0, 16.0], [55.0, 5.0]]\n')
    twin = build_twin(FleetOptions(count=20, dt_s=10.0, network=False, compute_policy="aware",
                                   compute_demand_scale=0.0, jurisdictions=str(good)))
    args = {"kind": "batch", "work_dev_s": 1.0, "input_bytes": 0.0, "output_bytes": 0.0, "state_bytes": 0.0,
            "checkpoint_every_dev_s": 0.0, "source": "city:Paris", "jurisdiction": "germany-box"}
    out = twin.compute.submit_job(args, np.arange(20), 0.0, twin.index)
    assert out["jurisdiction"]["kind"] == "polygon" and out["jurisdiction"]["gateways"] >= 1
    with pytest.raises(CommandError) as exc:
        twin.compute.submit_job(args | {"jurisdiction": "alps"}, np.arange(20), 0.0, twin.index)
    assert "germany-box" in exc.value.message  # the refusal names what is configured
    bad = tmp_path / "bad.toml"
    for text, words in (('[x]\npolygon = [[1.0, 2.0]]\n', "[x]"), ('[x]\nvertices = 3\n', "exactly polygon"),
                        ('not toml [', "cannot read")):
        bad.write_text(text)
        with pytest.raises(ValueError) as err:
            load_jurisdictions(str(bad))
        assert str(bad) in str(err.value) and words in str(err.value)


def test_the_jobs_example_scenario_runs_to_the_end():
    """examples/jobs.toml, as the README tells users to run it: every job ends completed, the EU and UK jobs
    downlink through gateways in their jurisdiction, and the policy switch is applied."""
    from pathlib import Path

    from twin.runtime.scenario import apply_scenario, load_scenario

    cat = load_catalogue()
    twin = FleetTwin(cat.subset(np.arange(0, len(cat), 3)), load_design(), dt_s=10.0, seed=11, network=False,
                     compute_policy="aware", compute_demand_scale=0.0)
    apply_scenario(twin, load_scenario(Path(__file__).resolve().parents[1] / "examples" / "jobs.toml"))
    sched = twin.compute.scheduler
    events = []
    for _ in range(100):  # 1,000 s
        twin.step()
        events += sched.drain_events()
    ended = {e.job_id: e.detail for e in events if e.what == "ended"}
    assert len(ended) == 3 and all(d["state"] == "completed" and d["reason"] == "done" for d in ended.values())
    gw = twin.compute.gateways
    for jid, spec in ((0, ["GBR"]), (2, ["EU"])):
        g = ended[jid]["gateway"]
        assert g >= 0 and Jurisdiction.parse(spec).gateways_allowed(gw.lat_deg[g:g + 1], gw.lon_deg[g:g + 1])[0]
    assert sched.policy == "nearest"
