"""The stale-catalogue policy (``--tle-epoch auto|keep|shift``): re-epoching is exact, keeps the
constellation's planes and phasing, ``auto`` switches at its threshold, and a default paced run
today has the whole shipped fleet in orbit (docs/physics.md#stale-catalogues)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from orbitwin.cli.fleet_options import fleet_options
from orbitwin.cli.main import build_parser
from twin.contract.asyncapi_payloads import catalogue_schema, state_schema
from twin.core.catalogue import (AUTO_SHIFT_AFTER_DAYS, TLE_EPOCH_POLICIES, CatalogueError, apply_tle_epoch,
                                 decide_tle_epoch, load_catalogue, shift_epochs)
from twin.core.engine import julian_split
from twin.core.ephemeris import iso_to_jd
from twin.core.orbit import FleetPropagator
from twin.schema.telemetry import MODE_LOST

CAT = load_catalogue()
START = "2026-12-02T14:00:00Z"  # 282 days after the shipped file's median epoch
MINUTES_PER_DAY = 1440.0


def reference_teme(cat: object, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Each element set as read, propagated from its own epoch to the median epoch plus ``dt_s`` (km, error codes)."""
    mw, mf = CAT.median_epoch_split()
    r = np.empty((len(CAT), 3))
    err = np.empty(len(CAT), dtype=int)
    for i, s in enumerate(CAT.satrecs):
        tsince_min = ((mw - s.jdsatepoch) + (mf - s.jdsatepochF)) * MINUTES_PER_DAY + dt_s / 60.0
        e, ri, _ = s.sgp4_tsince(tsince_min)
        err[i], r[i] = e, ri
    return r, err


@pytest.fixture(scope="module")
def shifted() -> object:
    return apply_tle_epoch(CAT, "shift", julian_split(iso_to_jd(START)))


@pytest.mark.parametrize("dt_s", [0.0, 1.0, 5740.0, 3 * 86400.0])
def test_shift_is_exact(shifted: object, dt_s: float) -> None:
    """Every shifted satellite at start + dt is where its own TLE puts it at the catalogue's median
    epoch + dt (its own epoch + the same interval), to 1 mm, through the twin's time path."""
    jd0, fr0 = julian_split(iso_to_jd(START))
    r_m, _, err = FleetPropagator(shifted).teme(jd0, fr0 + dt_s / 86400.0)
    ref_km, ref_err = reference_teme(CAT, dt_s)
    assert np.array_equal(err, ref_err)
    ok = err == 0
    assert ok.sum() > 9000
    assert np.max(np.abs(r_m[ok] - ref_km[ok] * 1e3)) < 1e-3


def test_the_median_satellite_is_re_epoched_to_the_start(shifted: object) -> None:
    """The literal case: the satellite whose epoch is the median one gets the start as its epoch, and
    at start + dt it is where its TLE puts it at its own epoch + dt."""
    i = int(np.argsort(CAT.epoch_jd, kind="stable")[len(CAT) // 2])
    sw, sf = julian_split(iso_to_jd(START))
    s = shifted.satrecs[i]
    assert abs((s.jdsatepoch - sw) + (s.jdsatepochF - sf)) * 86400.0 < 1e-6
    for dt_s in (0.0, 600.0, 86400.0):
        _, r_shift, _ = s.sgp4(sw, sf + dt_s / 86400.0)
        _, r_own, _ = CAT.satrecs[i].sgp4_tsince(dt_s / 60.0)
        assert np.max(np.abs(np.subtract(r_shift, r_own))) * 1e3 < 1e-3
    # the same mean elements
    for name in ("inclo", "nodeo", "ecco", "argpo", "mo", "no_kozai", "bstar"):
        assert getattr(s, name) == getattr(CAT.satrecs[i], name), name
    assert shifted.line1[i] == CAT.line1[i]  # the text as read; the shift is recorded beside it
    assert shifted.epoch.applied == "shift" and shifted.epoch.catalogue_epoch_jd == CAT.median_epoch_jd()


def test_constellation_planes_and_phasing_preserved(shifted: object) -> None:
    """Angles between every satellite's orbit plane and the first one's, and the in-plane phase of
    each satellite relative to its plane's node, are those of the catalogue at its epoch (1e-9 rad),
    while the propagated-as-given catalogue at the same start has lost a tenth of the fleet."""
    jd0, fr0 = julian_split(iso_to_jd(START))
    mw, mf = CAT.median_epoch_split()

    def geometry(cat: object, jd: float, fr: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r, v, err = FleetPropagator(cat).teme(jd, fr)
        h = np.cross(r, v)
        h /= np.linalg.norm(h, axis=1)[:, None]
        node = np.cross([0.0, 0.0, 1.0], h)
        node /= np.linalg.norm(node, axis=1)[:, None]
        u = np.arctan2(np.einsum("ij,ij->i", np.cross(node, r), h), np.einsum("ij,ij->i", node, r))
        plane_angle = np.arctan2(np.linalg.norm(np.cross(h, h[0]), axis=1), h @ h[0])  # well conditioned near 0
        return plane_angle, u, err

    a_s, u_s, e_s = geometry(shifted, jd0, fr0)
    a_o, u_o, e_o = geometry(CAT, mw, mf)
    ok = (e_s == 0) & (e_o == 0)
    assert ok.all()
    assert np.max(np.abs(a_s - a_o)) < 1e-9
    assert np.max(np.abs(np.angle(np.exp(1j * (u_s - u_o))))) < 1e-9
    _, _, e_keep = FleetPropagator(CAT).teme(jd0, fr0)
    assert (e_keep != 0).sum() > 500  # what shift avoids (980 when measured)


def test_measured_decay_of_the_shipped_file_as_given() -> None:
    """docs/physics.md#stale-catalogues, the table's rows at 0, 7 and 14 days (and 282, today's gap)."""
    mw, mf = CAT.median_epoch_split()
    prop = FleetPropagator(CAT)
    lost = {d: int((prop.teme(mw, mf + d)[2] != 0).sum()) for d in (0, 7, 14, 282)}
    assert lost == {0: 0, 7: 3, 14: 68, 282: 980}


@pytest.mark.parametrize("gap_days, want", [(0.0, "keep"), (6.99, "keep"), (-6.99, "keep"), (7.0, "keep"),
                                            (7.01, "shift"), (-7.01, "shift"), (282.6, "shift")])
def test_auto_threshold_both_sides(gap_days: float, want: str) -> None:
    assert AUTO_SHIFT_AFTER_DAYS == 7.0
    assert decide_tle_epoch("auto", gap_days) == want
    assert decide_tle_epoch("keep", gap_days) == "keep"
    assert decide_tle_epoch("shift", gap_days) == "shift"


@pytest.mark.parametrize("gap_days, want", [(6.9, "keep"), (-6.9, "keep"), (7.1, "shift"), (-7.1, "shift")])
def test_auto_on_a_catalogue(gap_days: float, want: str) -> None:
    sub = CAT.select(count=20)
    mw, mf = sub.median_epoch_split()
    out = apply_tle_epoch(sub, "auto", (mw, mf + gap_days))
    assert out.epoch.applied == want and out.epoch.policy == "auto"
    assert out.epoch.gap_days == pytest.approx(gap_days, abs=1e-9)
    if want == "keep":
        assert out.satrecs == sub.satrecs and out.epoch.shift_total_days == 0.0
    else:
        assert out.median_epoch_jd() == pytest.approx(mw + mf + gap_days, abs=1e-6)  # the start


def test_no_start_and_near_starts_are_untouched() -> None:
    """--speed max without --start (the catalogue epoch) and a --start within the threshold keep the
    element sets exactly as read."""
    from twin.runtime.run_loop import FleetOptions, build_twin, select_catalogue

    sub = CAT.select(count=30)
    for opts in (FleetOptions(count=30), FleetOptions(count=30, start="2026-02-25T00:00:00Z")):
        cat = select_catalogue(opts)
        assert cat.epoch.applied == "keep" and cat.epoch.policy == "auto"
        assert [(s.jdsatepoch, s.jdsatepochF) for s in cat.satrecs] == [(s.jdsatepoch, s.jdsatepochF)
                                                                          for s in sub.satrecs]
    with build_twin(FleetOptions(count=30, start="2026-02-25T00:00:00Z")) as twin:
        r, _, _ = twin.propagator.teme(*twin.jd_fr())
        r_ref, _, _ = FleetPropagator(sub).teme(*twin.jd_fr())
        assert np.array_equal(r, r_ref)


def test_bad_policy_and_double_shift_refused() -> None:
    with pytest.raises(CatalogueError, match="--tle-epoch"):
        decide_tle_epoch("later", 1.0)
    twice = apply_tle_epoch(CAT.select(count=3), "shift", (2461400.5, 0.25))
    with pytest.raises(CatalogueError, match="already shifted"):
        apply_tle_epoch(twice, "shift", (2461400.5, 0.25))
    # shift_epochs always starts from the text: shifting a shifted catalogue by 0 restores the epochs as read
    back = shift_epochs(twice, (0.0, 0.0))
    assert [s.jdsatepochF for s in back.satrecs] == [s.jdsatepochF for s in CAT.select(count=3).satrecs]


def test_default_paced_run_today_has_the_whole_fleet_in_orbit() -> None:
    """``orbitwin run`` (real time, no --start) starts at the wall clock; with the shipped catalogue
    months old, auto re-epochs it: no satellite lost, the median height within 10 km of the
    catalogue's mean altitude, also on ticks propagated by the orbit worker process."""
    from twin.runtime.launch import RunSpec, build_from_spec, with_default_start

    spec = with_default_start(RunSpec(speed="real"))
    assert spec.fleet.start is not None
    with build_from_spec(spec) as twin:
        assert twin.n == len(CAT) == 9543
        assert twin.catalogue.epoch.applied == "shift"  # the shipped file is > 7 days old from 2026-03-03 on
        for _ in range(3):  # ticks after the first come from the worker when there is one
            twin.step()
        assert int((twin.mode == MODE_LOST).sum()) == 0
        alt_m = twin.tm["alt_m"]
        assert np.isfinite(alt_m).all()
        assert abs(np.median(alt_m - CAT.mean_altitude_m)) < 10e3
        # the orbit worker rebuilt the same shifted element sets: its tick equals in-process SGP4
        from twin.core.orbit_pipeline import PipelinedPropagator

        if isinstance(twin.propagator, PipelinedPropagator):
            assert twin.propagator.fallback_reason is None
        r, _, _ = FleetPropagator(twin.catalogue).teme(*twin.jd_fr())
        assert np.array_equal(twin._r_last, r)


def test_the_run_says_what_it_did() -> None:
    from twin.runtime.launch import RunSpec, run_twin
    from twin.runtime.run_loop import FleetOptions

    out = io.StringIO()
    run_twin(RunSpec(fleet=FleetOptions(count=5), speed="x1000", duration_s=2.0, use_mqtt=False), out=out)
    text = out.getvalue()
    assert "orbitwin: catalogue epoch 2026-02-2" in text
    assert "days before the start; elements re-epoched to the start (--tle-epoch auto: more than 7 days apart)" in text
    assert "not where the real satellites are" in text and "fresh catalogue" in text
    out = io.StringIO()
    run_twin(RunSpec(fleet=FleetOptions(count=5, tle_epoch="keep"), speed="max", duration_s=2.0, use_mqtt=False),
             out=out)
    assert "is the start; elements propagated as given (--tle-epoch keep)" in out.getvalue()


def test_birth_and_catalogue_record_the_policy(tmp_path: Path) -> None:
    from twin.mqtt import MqttSettings
    from twin.runtime.mqtt_link import LinkSettings, MqttLink
    from twin.runtime.mqtt_service import TwinService
    from twin.runtime.run_loop import FleetOptions, build_twin

    with build_twin(FleetOptions(count=4, start=START)) as twin:
        link = MqttLink(MqttSettings("mqtt://127.0.0.1:1"), LinkSettings(state_dir=str(tmp_path)))
        TwinService(twin, link)
        info = link.birth_extra["tle_epoch"]
        jsonschema.validate({"v": 1, "state": "online", "bseq": link.bseq} | link.birth_extra, state_schema())
        (topic, payload), = link.retained_on_connect
        catalogue = json.loads(payload)
        jsonschema.validate(catalogue, catalogue_schema())
    assert catalogue["tle_epoch"] == info
    assert info["policy"] == "auto" and info["applied"] == "shift" and info["threshold_days"] == AUTO_SHIFT_AFTER_DAYS
    assert info["catalogue_epoch"].startswith("2026-02-2")
    assert info["shift_days"] == pytest.approx(info["start_minus_epoch_days"], abs=1e-5)
    assert info["shift_days"] == pytest.approx(iso_to_jd(START) - iso_to_jd(info["catalogue_epoch"]), abs=1e-5)


def test_cli_option() -> None:
    parser = build_parser()
    for argv, want in ((["run"], "auto"), (["run", "--tle-epoch", "keep"], "keep"),
                       (["catalogue", "--tle-epoch", "shift"], "shift")):
        a = parser.parse_args(argv)
        assert a.tle_epoch == want and fleet_options(a).tle_epoch == want
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--tle-epoch", "later"])
    action = next(x for x in parser._subparsers._group_actions[0].choices["run"]._actions  # type: ignore[union-attr]
                  if x.dest == "tle_epoch")
    assert tuple(action.choices) == TLE_EPOCH_POLICIES
    assert f"more than {AUTO_SHIFT_AFTER_DAYS:g} days" in action.help
