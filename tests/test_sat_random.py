"""Per-satellite counter-based random streams: distributions against scipy, and shard invariance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from twin.core import sat_random
from twin.core.sat_random import SatRandom, binomial_inverse, poisson_inverse

NAMES = [f"SAT-{i:05d}" for i in range(20_000)]


def test_uniforms_are_uniform_and_streams_ticks_and_indices_independent() -> None:
    r = SatRandom.for_names(3, NAMES)
    u = r.draws(sat_random.SEU, 7).uniform()
    assert u.shape == (len(NAMES),) and u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    others = [r.draws(sat_random.SEU, 8).uniform(), r.draws(sat_random.SEL, 7).uniform(),
              r.draws(sat_random.SEU, 7).uniform(index=1), SatRandom.for_names(4, NAMES).draws(sat_random.SEU, 7).uniform()]
    for v in others:  # correlation of independent uniforms: ~N(0, 1/n)
        assert abs(np.corrcoef(u, v)[0, 1]) < 4 / np.sqrt(u.size)
        assert not np.array_equal(u, v)
    # neighbouring satellites are independent too (lag-1 correlation)
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 4 / np.sqrt(u.size)


def test_same_key_same_numbers_whatever_the_company() -> None:
    full = SatRandom.for_names(11, NAMES)
    rows = np.array([5, 17, 19_999, 3])
    part = SatRandom.for_names(11, [NAMES[i] for i in rows])
    for stream, tick in ((sat_random.SEU, 0), (sat_random.SEL, 123456), (sat_random.SENSOR_NOISE, 2**40)):
        a, b = full.draws(stream, tick), part.draws(stream, tick)
        np.testing.assert_array_equal(a.uniform()[rows], b.uniform())
        np.testing.assert_array_equal(a.uniform(rows, 3), b.uniform(None, 3))
        np.testing.assert_array_equal(a.normal(rows, 2), b.normal(None, 2))
        assert a.generator(int(rows[1]), 4).random() == b.generator(1, 4).random()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**63), tick=st.integers(0, 2**40), order=st.permutations(list(range(6))))
def test_property_a_satellite_draws_the_same_in_any_order_and_subset(seed: int, tick: int, order: list[int]) -> None:
    names = [f"S{i}" for i in range(6)]
    whole = SatRandom.for_names(seed, names).draws(sat_random.SEL, tick).uniform()
    shuffled = SatRandom.for_names(seed, [names[i] for i in order]).draws(sat_random.SEL, tick).uniform()
    np.testing.assert_array_equal(whole[order], shuffled)


def test_poisson_inversion_equals_scipy_quantile() -> None:
    rng = np.random.default_rng(0)
    lam = rng.choice([1e-6, 0.01, 0.3, 1.0, 4.5, 12.0, 29.0], 50_000)
    u = rng.random(lam.size)
    np.testing.assert_array_equal(poisson_inverse(lam, u), stats.poisson.ppf(u, lam).astype(np.int64))
    assert np.all(poisson_inverse(np.zeros(5), np.linspace(0, 0.999, 5)) == 0)


def test_binomial_inversion_equals_scipy_quantile() -> None:
    rng = np.random.default_rng(1)
    n = rng.integers(0, 200, 50_000)
    u = rng.random(n.size)
    for p in (0.014, 0.3, 0.9):
        np.testing.assert_array_equal(binomial_inverse(n, p, u), stats.binom.ppf(u, n, p).astype(np.int64))


def test_poisson_binomial_and_normal_draws_have_their_moments() -> None:
    n = len(NAMES)
    d = SatRandom.for_names(5, NAMES).draws(sat_random.SEU, 1)
    for lam in (0.2, 3.0, 80.0):  # 80: the Philox path
        k = d.poisson(np.full(n if lam < 50 else 500, lam), None if lam < 50 else np.arange(500))
        assert abs(k.mean() - lam) < 4 * np.sqrt(lam / k.size)
        assert k.var() == pytest.approx(lam, rel=0.1 if lam < 50 else 0.3)
    rows = np.arange(n)
    k = d.binomial(40, 0.25, rows)
    assert abs(k.mean() - 10.0) < 4 * np.sqrt(7.5 / n) and k.var() == pytest.approx(7.5, rel=0.05)
    big = d.binomial(10_000, 0.5, rows[:300])  # Philox path
    assert abs(big.mean() - 5000.0) < 4 * 50.0 / np.sqrt(300)
    z = d.normal()
    assert stats.kstest(z, "norm").pvalue > 1e-3
