"""Satellite catalogue: load TLE files and select satellites by name, shell and count."""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from sgp4.api import WGS72, Satrec

from twin.core.constants import MU_EARTH_M3_S2, R_EARTH_M

DEFAULT_TLE_NAME = "starlink-2026-02-23.tle"


class CatalogueError(ValueError):
    """A TLE file or a selection that cannot be used; the message says which line or why."""


@dataclass(frozen=True)
class Catalogue:
    """Satellites from a TLE file, index-aligned: ``names[i]`` is ``satrecs[i]``."""

    names: tuple[str, ...]
    satrecs: tuple[Satrec, ...]
    line1: tuple[str, ...]
    line2: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return len(self.names)

    @property
    def norad_ids(self) -> np.ndarray:
        return np.array([s.satnum for s in self.satrecs], dtype=np.int64)

    @property
    def inclination_deg(self) -> np.ndarray:
        return np.degrees([s.inclo for s in self.satrecs])

    @property
    def mean_altitude_m(self) -> np.ndarray:
        """Altitude of the mean semi-major axis above the equatorial radius (m)."""
        n_rad_s = np.array([s.no_kozai for s in self.satrecs]) / 60.0
        a_m = np.cbrt(MU_EARTH_M3_S2 / n_rad_s**2)
        return a_m - R_EARTH_M

    @property
    def epoch_jd(self) -> np.ndarray:
        return np.array([s.jdsatepoch + s.jdsatepochF for s in self.satrecs])

    def median_epoch_jd(self) -> float:
        return float(np.median(self.epoch_jd))

    def subset(self, indices: Sequence[int] | np.ndarray) -> Catalogue:
        idx = [int(i) for i in indices]
        return Catalogue(
            tuple(self.names[i] for i in idx),
            tuple(self.satrecs[i] for i in idx),
            tuple(self.line1[i] for i in idx),
            tuple(self.line2[i] for i in idx),
            self.source,
        )

    def select(
        self,
        names: str | Iterable[str] | None = None,
        alt_km: tuple[float, float] | None = None,
        inc_deg: tuple[float, float] | None = None,
        count: int | None = None,
    ) -> Catalogue:
        """Satellites matching every given criterion, in catalogue order.

        ``names``: a glob pattern (``STARLINK-3*``), a comma-separated list of patterns, or an
        iterable of them; ``alt_km`` and ``inc_deg``: inclusive bands on mean altitude and
        inclination (a shell); ``count``: keep the first N of what matches.
        """
        mask = np.ones(len(self), dtype=bool)
        if names is not None:
            patterns = [p.strip() for p in (names.split(",") if isinstance(names, str) else names)]
            mask &= np.array([any(fnmatch.fnmatchcase(n, p) for p in patterns) for n in self.names], dtype=bool)
        if alt_km is not None:
            alt = self.mean_altitude_m / 1e3
            mask &= (alt >= alt_km[0]) & (alt <= alt_km[1])
        if inc_deg is not None:
            inc = self.inclination_deg
            mask &= (inc >= inc_deg[0]) & (inc <= inc_deg[1])
        idx = np.flatnonzero(mask)
        if count is not None:
            if count < 1:
                raise CatalogueError(f"count must be >= 1, got {count}")
            idx = idx[:count]
        if idx.size == 0:
            raise CatalogueError("no satellite matches the selection")
        return self.subset(idx)


def shell_label(alt_m: np.ndarray, inc_deg: np.ndarray) -> list[str]:
    """A coarse shell label per satellite, ``"550km-53deg"`` (altitude to 10 km, inclination to 1 deg)."""
    alt10 = np.round(np.asarray(alt_m) / 1e4) * 10
    inc = np.round(np.asarray(inc_deg))
    return [f"{int(a)}km-{int(i)}deg" if math.isfinite(a) else "unknown" for a, i in zip(alt10, inc)]


_CHECKSUM_RE = re.compile(r"^[12] ")


def _checksum_ok(line: str) -> bool:
    if len(line) < 69 or not line[68].isdigit():
        return True  # no checksum column: accept, sgp4 validates the rest
    total = sum(int(c) if c.isdigit() else (1 if c == "-" else 0) for c in line[:68])
    return total % 10 == int(line[68])


def parse_tle_text(text: str, source: str = "<text>") -> Catalogue:
    """Parse 3-line (name + 2 lines) or 2-line TLE text; raise :class:`CatalogueError` naming the line."""
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    names: list[str] = []
    sats: list[Satrec] = []
    l1s: list[str] = []
    l2s: list[str] = []
    i = 0
    while i < len(lines):
        name = None
        if not _CHECKSUM_RE.match(lines[i]):
            name = lines[i].strip()
            i += 1
        if i + 1 >= len(lines):
            raise CatalogueError(f"{source}: line {i + 1}: truncated TLE (expected two element lines)")
        l1, l2 = lines[i], lines[i + 1]
        if not (l1.startswith("1 ") and l2.startswith("2 ")):
            raise CatalogueError(f"{source}: line {i + 1}: expected TLE line 1 and 2, got {l1[:20]!r}")
        for k, ln in ((i + 1, l1), (i + 2, l2)):
            if len(ln) < 68:
                raise CatalogueError(f"{source}: line {k}: TLE line too short ({len(ln)} < 68 characters)")
            if not _checksum_ok(ln):
                raise CatalogueError(f"{source}: line {k}: TLE checksum mismatch")
        if l1[2:7] != l2[2:7]:
            raise CatalogueError(f"{source}: line {i + 2}: catalogue numbers differ ({l1[2:7]!r} vs {l2[2:7]!r})")
        try:
            sat = Satrec.twoline2rv(l1, l2, WGS72)
        except Exception as exc:  # sgp4 raises ValueError with a message for malformed lines
            raise CatalogueError(f"{source}: line {i + 1}: {exc}") from exc
        names.append(name or f"NORAD-{sat.satnum}")
        sats.append(sat)
        l1s.append(l1)
        l2s.append(l2)
        i += 2
    if not sats:
        raise CatalogueError(f"{source}: no TLE found")
    return Catalogue(tuple(names), tuple(sats), tuple(l1s), tuple(l2s), source)


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Load a TLE file; ``None`` loads the Starlink catalogue shipped with the package."""
    if path is None:
        ref = resources.files("twin") / "data" / DEFAULT_TLE_NAME
        return parse_tle_text(ref.read_text(), DEFAULT_TLE_NAME)
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise CatalogueError(f"{p}: cannot read TLE file: {exc.strerror}") from exc
    return parse_tle_text(text, str(p))
