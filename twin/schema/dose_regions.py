"""Where the dose accrues: the regions the fleet summary and ``orbitwin validate`` split dose by.

One definition for the twin's fleet summary (the fleet's dose rate summed per region, published on
``fleet/summary`` and stored in the ``fleet`` measurement), the validation's dose split
(``twin/validation/dose_split.py``), the AsyncAPI document and the fleet dashboard's radiation panels.
The classifier itself (arrays in, region index out) is :func:`twin.core.radiation.dose_region`:

* ``saa``: inside the South Atlantic Anomaly, i.e. the telemetry ``in_saa`` flag (trapped proton
  flux above ``radiation.saa_proton_flux_cm2_s``);
* ``horns``: outside the SAA with centred-dipole McIlwain L >= :data:`HORN_MIN_L` (the outer
  electron belt's high-latitude horns);
* ``elsewhere``: the rest (inner-belt electrons at the SAA's edge, low latitudes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

HORN_MIN_L: Final = 3.0
"""Dipole L [Earth radii] from which a point outside the SAA counts as the outer belt's horns (the slot lies near L 2-3)."""


@dataclass(frozen=True)
class DoseRegion:
    """One region: index (the classifier's value), name (in field names), label (in tables and panels), meaning."""

    index: int
    name: str
    label: str
    description: str

    @property
    def summary_field(self) -> str:
        """The fleet summary's field: the fleet's dose rate summed over its satellites in this region [rad(Si)/s]."""
        return f"dose_rate_{self.name}_rad_s"


DOSE_REGIONS: Final[tuple[DoseRegion, ...]] = (
    DoseRegion(0, "saa", "SAA", "inside the South Atlantic Anomaly (the in_saa flag)"),
    DoseRegion(1, "horns", "horns", f"outside the SAA, centred-dipole L >= {HORN_MIN_L:g} (outer-belt horns)"),
    DoseRegion(2, "elsewhere", "elsewhere", f"outside the SAA, dipole L < {HORN_MIN_L:g} (low latitudes, the SAA's edge)"),
)
assert [r.index for r in DOSE_REGIONS] == list(range(len(DOSE_REGIONS)))
SUMMARY_FIELDS: Final[tuple[str, ...]] = tuple(r.summary_field for r in DOSE_REGIONS)
SUMMARY_UNIT: Final = "rad(Si)/s"
