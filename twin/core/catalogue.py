"""Satellite catalogue: load TLE files, select satellites by name, shell and count, re-epoch stale ones.

A catalogue far from the run's start is handled by an explicit policy (``--tle-epoch``):
``keep`` propagates the element sets as given, ``shift`` re-epochs every one of them by the same
interval so that the catalogue's median epoch lands on the start (same mean elements: the
constellation's planes and phasing are those of the catalogue, not where the real satellites are
at the start), and ``auto`` shifts only when the start is more than
:data:`AUTO_SHIFT_AFTER_DAYS` from the median epoch. Figures and sources: docs/physics.md#stale-catalogues.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from sgp4.api import WGS72, Satrec

from twin.core.constants import MU_EARTH_M3_S2, R_EARTH_M

DEFAULT_TLE_NAME = "starlink-2026-02-23.tle"

TLE_EPOCH_POLICIES = ("auto", "keep", "shift")
# auto re-epochs a catalogue whose median epoch is more than this from the start (days): an
# estimate, docs/physics.md#stale-catalogues (measured on the shipped file: 3 of 9,543 element sets
# fail 7 days after its epoch, 68 after 14, 980 after 282; published TLE accuracy is ~1 km near
# epoch, growing by kilometres a day in low orbit)
AUTO_SHIFT_AFTER_DAYS = 7.0
_SGP4_MAX_SATNUM = 339_999
_JD_SGP4_EPOCH0 = 2433281.5  # sgp4init's epoch origin, 1949 December 31 00:00 UT (Julian date)


class CatalogueError(ValueError):
    """A TLE file or a selection that cannot be used; the message says which line or why."""


@dataclass(frozen=True)
class TleEpoch:
    """What was done with a catalogue's epochs: the policy asked for and the one applied.

    ``shift_days`` is the interval every element set's epoch was moved by, as whole days plus a
    fraction of a day (two floats keep sub-microsecond precision); ``catalogue_epoch_jd`` the
    median epoch of the element text as read (UTC Julian date); ``gap_days`` the run's start minus
    that epoch (days); ``threshold_days`` the ``auto`` threshold. A catalogue as read has
    ``applied == "keep"`` and no shift.
    """

    policy: str = "keep"
    applied: str = "keep"
    shift_days: tuple[float, float] = (0.0, 0.0)
    catalogue_epoch_jd: float | None = None
    threshold_days: float = AUTO_SHIFT_AFTER_DAYS
    gap_days: float = 0.0

    @property
    def shift_total_days(self) -> float:
        """The shift as one number of days (start minus the catalogue's median epoch when shifted)."""
        return self.shift_days[0] + self.shift_days[1]


@dataclass(frozen=True)
class Catalogue:
    """Satellites from a TLE file, index-aligned: ``names[i]`` is ``satrecs[i]``.

    ``line1``/``line2`` are the element text as read; when ``epoch.applied == "shift"`` the
    ``satrecs`` carry the same elements with every epoch moved by ``epoch.shift_days``
    (:func:`shift_epochs` rebuilds them from the text bit for bit).
    """

    names: tuple[str, ...]
    satrecs: tuple[Satrec, ...]
    line1: tuple[str, ...]
    line2: tuple[str, ...]
    source: str
    epoch: TleEpoch = TleEpoch()
    # mean elements (:func:`element_table`) of a catalogue built from elements rather than text (a
    # synthetic constellation, or one mixed with a TLE file): its satrecs are sgp4init of these rows
    # and its line1/line2 are empty; None for a catalogue read from TLE text
    elements: np.ndarray | None = field(default=None, compare=False, repr=False)
    # bool per satellite: slots not in orbit yet at the start (launched by the twin's ``launch`` command;
    # twin.core.deployment); None: every satellite is in orbit
    pending: np.ndarray | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_elements(cls, names: tuple[str, ...], elements: np.ndarray, source: str,
                      pending: np.ndarray | None = None) -> Catalogue:
        """A catalogue of ``elements`` (:func:`element_table` rows), initialised with sgp4init (WGS-72)."""
        if len(names) != len(elements):
            raise CatalogueError(f"{source}: {len(names)} names for {len(elements)} element sets")
        blank = ("",) * len(names)
        return cls(names, tuple(satrecs_from_elements(elements)), blank, blank, source, TleEpoch(), elements,
                   None if pending is None or not np.any(pending) else np.asarray(pending, dtype=bool))

    def pending_mask(self) -> np.ndarray:
        """Bool per satellite: not in orbit at the start."""
        return np.zeros(len(self), dtype=bool) if self.pending is None else self.pending

    def element_rows(self) -> np.ndarray:
        """Every satellite's mean elements as :func:`element_table` rows (from the satrecs for a TLE catalogue)."""
        return self.elements if self.elements is not None else elements_of(self.satrecs)

    def __add__(self, other: Catalogue) -> Catalogue:
        """This catalogue followed by ``other`` (a TLE file mixed with a synthetic constellation).

        The result is built from elements, so both parts go through sgp4init the same way in every process.
        """
        if self.epoch.applied == "shift" or other.epoch.applied == "shift":
            raise CatalogueError("join catalogues before re-epoching them")
        clash = set(self.names) & set(other.names)
        if clash:
            raise CatalogueError(f"satellite names in both catalogues: {', '.join(sorted(clash)[:5])}")
        pending = np.concatenate([self.pending_mask(), other.pending_mask()])
        return Catalogue.from_elements(self.names + other.names,
                                       np.concatenate([self.element_rows(), other.element_rows()]),
                                       f"{self.source}+{other.source}", pending)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def norad_ids(self) -> np.ndarray:
        if self.elements is not None:
            return np.asarray(self.elements["satnum"], dtype=np.int64)
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

    def median_epoch_split(self) -> tuple[float, float]:
        """The median epoch as (whole Julian day ending in .5, fraction of a day), to ~1e-16 day.

        Odd counts: the middle satellite's own epoch exactly; even counts: the mean of the two middle ones.
        """
        order = np.argsort(self.epoch_jd, kind="stable")
        mid = len(order) // 2
        picks = [order[mid]] if len(order) % 2 else [order[mid - 1], order[mid]]
        whole = sum(self.satrecs[i].jdsatepoch for i in picks) / len(picks)
        frac = sum(self.satrecs[i].jdsatepochF for i in picks) / len(picks)
        return _normalise(whole, frac)

    def subset(self, indices: Sequence[int] | np.ndarray) -> Catalogue:
        idx = [int(i) for i in indices]
        return Catalogue(
            tuple(self.names[i] for i in idx),
            tuple(self.satrecs[i] for i in idx),
            tuple(self.line1[i] for i in idx),
            tuple(self.line2[i] for i in idx),
            self.source,
            self.epoch,
            None if self.elements is None else self.elements[np.asarray(idx, dtype=np.int64)],
            None if self.pending is None else self.pending[np.asarray(idx, dtype=np.int64)],
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


ELEMENT_FIELDS = ("satnum", "epoch_whole", "epoch_frac", "bstar", "ndot", "nddot", "ecco", "argpo", "inclo", "mo",
                  "no_kozai", "nodeo")


def element_table(n: int) -> np.ndarray:
    """``n`` zeroed rows of SGP4 mean elements: ``satnum`` (int), epoch as a UTC Julian date in two parts
    (``epoch_whole`` ending in .5, ``epoch_frac``), ``bstar`` (1/earth radii), ``ndot``/``nddot``, ``ecco``,
    angles ``argpo``/``inclo``/``mo``/``nodeo`` (rad) and ``no_kozai`` (rad/min): sgp4init's arguments."""
    return np.zeros(n, dtype=[(k, np.int64 if k == "satnum" else np.float64) for k in ELEMENT_FIELDS])


def elements_of(satrecs: Sequence[Satrec]) -> np.ndarray:
    """The :func:`element_table` rows of initialised satrecs."""
    table = element_table(len(satrecs))
    for k in ELEMENT_FIELDS:
        attr = {"epoch_whole": "jdsatepoch", "epoch_frac": "jdsatepochF"}.get(k, k)
        table[k] = [getattr(s, attr) for s in satrecs]
    return table


def satrecs_from_elements(elements: np.ndarray) -> list[Satrec]:
    """sgp4init (WGS-72, improved mode) of every row of :func:`element_table`, epochs set exactly.

    The same rows give bit-identical satrecs in every process (the orbit worker rebuilds them so).
    """
    out: list[Satrec] = []
    cols = [elements[k].tolist() for k in ELEMENT_FIELDS]
    for satnum, whole, frac, bstar, ndot, nddot, ecco, argpo, inclo, mo, no, nodeo in zip(*cols):
        sat = Satrec()
        # sgp4 keeps catalogue numbers up to Alpha-5's 339,999; larger ones (synthetic) live in the table only
        sat.sgp4init(WGS72, "i", satnum if satnum <= _SGP4_MAX_SATNUM else 0, (whole - _JD_SGP4_EPOCH0) + frac, bstar, ndot, nddot, ecco, argpo, inclo,
                     mo, no, nodeo)
        sat.jdsatepoch, sat.jdsatepochF = whole, frac
        out.append(sat)
    return out


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


def _normalise(whole: float, frac: float) -> tuple[float, float]:
    """(whole, frac) with whole ending in .5 and 0 <= frac < 1 (same instant)."""
    base = math.floor(whole - 0.5) + 0.5  # a whole part that is not .5-aligned moves its excess into frac
    frac += whole - base
    k = math.floor(frac)
    return base + k, frac - k


def _reepoch(sat: Satrec, whole: float, frac: float) -> Satrec:
    """``sat``'s mean elements with epoch (whole, frac) (UTC Julian date in two parts), via sgp4init."""
    out = Satrec()
    out.sgp4init(WGS72, sat.operationmode, sat.satnum, (whole - _JD_SGP4_EPOCH0) + frac, sat.bstar, sat.ndot,
                 sat.nddot, sat.ecco, sat.argpo, sat.inclo, sat.mo, sat.no_kozai, sat.nodeo)
    # sgp4init keeps the epoch as one float (~0.3 us near 2026); SGP4 measures time since epoch from
    # these two parts, so set them exactly
    out.jdsatepoch, out.jdsatepochF = whole, frac
    for attr in ("classification", "intldesg", "elnum", "revnum", "ephtype"):
        setattr(out, attr, getattr(sat, attr))
    return out


def shift_epochs(cat: Catalogue, shift_days: tuple[float, float], policy: str = "shift") -> Catalogue:
    """``cat`` with every element set's epoch moved by the same ``shift_days`` (whole days, fraction).

    Same mean elements (inclination, RAAN, eccentricity, argument of perigee, mean anomaly, mean
    motion, B*), re-initialised with WGS-72 like the TLEs: each satellite at time t is where the
    element text puts it at t minus the shift (TEME), so the planes and phasing of the whole
    catalogue are kept and the time since each epoch is unchanged. Applies to the element text's
    epochs whatever ``cat`` carried before.
    """
    if cat.epoch.applied == "shift" and cat.elements is not None:
        cat = Catalogue.from_elements(cat.names, cat.elements, cat.source)
    elif cat.epoch.applied == "shift":
        cat = parse_tle_text("\n".join(f"{a}\n{b}" for a, b in zip(cat.line1, cat.line2)), cat.source)
    original = cat.median_epoch_jd()
    dw, df = shift_days
    sats = tuple(_reepoch(s, *_normalise(s.jdsatepoch + dw, s.jdsatepochF + df)) for s in cat.satrecs)
    return Catalogue(cat.names, sats, cat.line1, cat.line2, cat.source,
                     TleEpoch(policy, "shift", (float(dw), float(df)), original, cat.epoch.threshold_days,
                              float(dw) + float(df)), cat.elements, cat.pending)


def decide_tle_epoch(policy: str, start_minus_epoch_days: float,
                     threshold_days: float = AUTO_SHIFT_AFTER_DAYS) -> str:
    """``"keep"`` or ``"shift"``: what ``policy`` does for a start this far from the median epoch (days).

    ``auto`` shifts only when ``|start - epoch|`` exceeds ``threshold_days``.
    """
    if policy not in TLE_EPOCH_POLICIES:
        raise CatalogueError(f"--tle-epoch must be one of {', '.join(TLE_EPOCH_POLICIES)}, got {policy!r}")
    if policy == "auto":
        return "shift" if abs(start_minus_epoch_days) > threshold_days else "keep"
    return policy


def apply_tle_epoch(cat: Catalogue, policy: str, start: tuple[float, float] | None,
                    threshold_days: float = AUTO_SHIFT_AFTER_DAYS) -> Catalogue:
    """``cat`` under the stale-catalogue ``policy`` for a run starting at ``start``.

    ``start``: the run's start as (whole Julian day, fraction), the engine's split; ``None`` means
    the run starts at the catalogue's median epoch (nothing to shift). ``shift`` moves every epoch
    by start minus the median epoch (:meth:`Catalogue.median_epoch_split`), so the median epoch
    lands on the start; ``keep`` returns the elements as given; the result records what was done.
    """
    if cat.epoch.applied == "shift":
        raise CatalogueError("the catalogue's epochs are already shifted")
    mw, mf = cat.median_epoch_split()
    sw, sf = (mw, mf) if start is None else start
    shift = (sw - mw, sf - mf)
    gap = shift[0] + shift[1]
    if decide_tle_epoch(policy, gap, threshold_days) == "keep":
        return dataclasses.replace(cat, epoch=TleEpoch(policy, "keep", (0.0, 0.0), cat.median_epoch_jd(),
                                                       threshold_days, gap))
    return shift_epochs(dataclasses.replace(cat, epoch=TleEpoch(threshold_days=threshold_days)), shift, policy)
