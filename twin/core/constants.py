"""Physical constants (SI units) used across the twin. Sources in comments."""

R_EARTH_M = 6_378_137.0  # WGS-84 equatorial radius
MU_EARTH_M3_S2 = 3.986004418e14  # EGM-96 / WGS-84 gravitational parameter
SIGMA_W_M2_K4 = 5.670374419e-8  # CODATA 2018 Stefan-Boltzmann constant
AU_M = 149_597_870_700.0  # IAU 2012
SOLAR_CONSTANT_W_M2 = 1361.0  # at 1 AU, Kopp & Lean 2011 (1360.8 +/- 0.5)
R_SUN_M = 695_700_000.0  # IAU 2015 nominal solar radius
EARTH_ALBEDO = 0.30  # Bond albedo, NASA/TM-2001-211221 mean
EARTH_IR_W_M2 = 237.0  # OLR at top of atmosphere, NASA/TM-2001-211221 mean
T_SPACE_K = 2.7  # cosmic background
RAD_PER_GRAY = 100.0
SECONDS_PER_DAY = 86_400.0
SECONDS_PER_YEAR = 365.25 * SECONDS_PER_DAY
