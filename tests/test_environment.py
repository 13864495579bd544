"""Environment fluxes and view factors against the figures of docs/physics.md#environment."""

import numpy as np
import pytest

from twin.core import environment as env
from twin.core.constants import AU_M

ALT = 550e3


def test_solar_flux_scales_inverse_square() -> None:
    s = env.solar_flux_w_m2(np.array([AU_M, 0.983 * AU_M, 1.017 * AU_M]))
    assert s[0] == pytest.approx(1361.0, abs=1e-9)
    # docs/physics.md#environment: 1407.7 W/m^2 at perihelion, 1316.6 W/m^2 at aphelion
    assert s[1] == pytest.approx(1408.5, abs=1.0)
    assert s[2] == pytest.approx(1316.0, abs=1.0)


def test_view_factors_at_550_km() -> None:
    assert float(env.earth_view_factor_plate(ALT)) == pytest.approx(0.8475, abs=5e-4)
    assert float(env.earth_view_factor_sphere(ALT)) == pytest.approx(0.305, abs=1e-3)


def test_view_factors_vectorised_and_monotonic() -> None:
    alt = np.array([300e3, 550e3, 1200e3])
    fp, fs = env.earth_view_factor_plate(alt), env.earth_view_factor_sphere(alt)
    assert fp.shape == fs.shape == (3,)
    assert np.all(np.diff(fp) < 0) and np.all(np.diff(fs) < 0)
    assert np.all(fs < 0.5) and np.all(fs < fp)


def test_earth_ir_on_plate() -> None:
    assert float(env.earth_ir_flux_w_m2(ALT)) == pytest.approx(201.0, abs=1.0)


def test_albedo_subsolar_and_night() -> None:
    q = env.albedo_flux_w_m2(np.full(4, 1361.0), np.array([1.0, 0.5, 0.0, -0.7]), np.full(4, ALT))
    assert q[0] == pytest.approx(346.0, abs=1.0)  # docs/physics.md#environment: subsolar albedo at 550 km
    assert q[1] == pytest.approx(q[0] / 2, rel=1e-12)
    assert q[2] == 0.0 and q[3] == 0.0
    q2 = env.albedo_flux_w_m2(1361.0, 1.0, ALT, albedo=0.6)
    assert float(q2) == pytest.approx(2 * q[0], rel=1e-12)
