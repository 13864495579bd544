"""Physical constants (SI units) used across the twin. Sources in comments and docs/physics.md#constants."""

R_EARTH_M = 6_378_137.0  # WGS-84 equatorial radius
WGS84_FLATTENING = 1.0 / 298.257223563  # WGS-84 ellipsoid flattening
OMEGA_EARTH_RAD_S = 7.2921150e-5  # IERS mean sidereal rotation rate of the Earth
MU_EARTH_M3_S2 = 3.986004418e14  # EGM-96 / WGS-84 gravitational parameter
SIGMA_W_M2_K4 = 5.670374419e-8  # CODATA 2018 Stefan-Boltzmann constant
AU_M = 149_597_870_700.0  # IAU 2012
SOLAR_CONSTANT_W_M2 = 1361.0  # at 1 AU, Kopp & Lean 2011 (1360.8 +/- 0.5)
R_SUN_M = 695_700_000.0  # IAU 2015 nominal solar radius
EARTH_ALBEDO = 0.30  # Bond albedo, NASA/TM-2001-211221 mean
EARTH_IR_W_M2 = 237.0  # OLR at top of atmosphere, NASA/TM-2001-211221 mean
T_SPACE_K = 2.7  # cosmic background
SECONDS_PER_DAY = 86_400.0
DAYS_PER_JULIAN_YEAR = 365.25
JD_J2000 = 2_451_545.0  # Julian date of 2000-01-01 12:00 (epoch J2000.0), in the time scale of the date
SECONDS_PER_YEAR = DAYS_PER_JULIAN_YEAR * SECONDS_PER_DAY
