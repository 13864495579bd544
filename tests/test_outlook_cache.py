"""The scheduler's outlooks counted down between staggered refreshes agree with fresh ones (issue 16).

At dt 1 s the engine refreshes the eclipse outlook for a twentieth of the fleet per tick and the SAA outlook
for a 120th (here: a tenth, every 10 s); in between the stored times are counted down. Along real SGP4 orbits the counted-down
times to the next eclipse must stay within a few seconds of a fresh closed-form computation.
"""

from __future__ import annotations

import numpy as np
import pytest

from twin.core.catalogue import load_catalogue
from twin.core.compute.outlook import Outlook, OutlookCache, eclipse_outlook
from twin.core.ephemeris import SunEphemeris
from twin.core.orbit import FleetPropagator


def test_countdown_turns_entries_and_exits_into_the_right_state():
    c = OutlookCache(3, 10.0)
    c.refresh(np.arange(3), Outlook(np.array([False, True, False]), np.array([5.0, 0.0, np.inf]),
                                    np.array([100.0, 3.0, 0.0])), 0.0)
    o = c.at(8.0)
    assert list(o.in_eclipse) == [True, False, False]
    assert o.eclipse_left_s[0] == pytest.approx(97.0) and o.time_to_eclipse_s[0] == 0.0
    assert o.time_to_eclipse_s[1] == np.inf  # left, next entry unknown until the refresh
    assert o.time_to_eclipse_s[2] == np.inf and not o.in_eclipse[2]
    assert c.at(3.0).time_to_eclipse_s[0] == pytest.approx(2.0)


def test_staggered_refresh_covers_everyone_within_the_interval():
    c = OutlookCache(100, 10.0)
    seen = np.zeros(100, int)
    for tick in range(1, 31):
        due = c.due(float(tick), 1.0)
        seen[due] += 1
        c.refresh(due, Outlook(np.zeros(due.size, bool), np.full(due.size, 50.0), np.full(due.size, 20.0)), float(tick))
        assert np.all(float(tick) - c.t_ref < 10.0 + 1e-9)
    assert seen.min() >= 3 and seen.max() <= 4  # every 10 ticks, spread: no tick refreshes everyone


def test_counted_down_eclipse_times_match_fresh_ones_along_real_orbits():
    cat = load_catalogue()
    cat = cat.subset(np.arange(0, len(cat), 40))
    prop, sun = FleetPropagator(cat), SunEphemeris()
    jd = float(np.floor(cat.median_epoch_jd() - 0.5) + 0.5)
    cache = OutlookCache(len(cat), 10.0)
    worst = 0.0
    for tick in range(0, 1200):  # 20 min at dt 1 s
        fr = 0.3 + tick / 86400.0
        orb = prop.propagate(jd, fr, 0.0)
        s = sun.at(jd, fr)[0]
        s = s / np.linalg.norm(s)
        due = cache.due(float(tick), 1.0)
        if due.size:
            cache.refresh(due, eclipse_outlook(orb.r_teme_m[due], orb.v_teme_m_s[due], s), float(tick))
        if tick % 37 == 0 and tick > 20:
            fresh = eclipse_outlook(orb.r_teme_m, orb.v_teme_m_s, s)
            held = cache.at(float(tick))
            ok = np.isfinite(fresh.time_to_eclipse_s) & np.isfinite(held.time_to_eclipse_s)
            worst = max(worst, float(np.max(np.abs(fresh.time_to_eclipse_s[ok] - held.time_to_eclipse_s[ok]))))
            agree = np.mean(fresh.in_eclipse == held.in_eclipse)
            assert agree > 0.98
    assert worst < 2.0, f"counted-down time to eclipse off by {worst:.1f} s"
