"""Build ``twin/data/countries_110m.json`` from Natural Earth's 1:110m admin-0 countries.

Source: the ``naturalearth_lowres`` data set shipped in the geopandas 0.14.4 wheel (Natural Earth
1:110m Cultural Vectors, Admin 0 - Countries, v5.1.1 (geopandas PR 2555), public domain). geopandas
already replaced ``ISO_A3 == -99`` by ``ADM0_A3`` for sovereign countries and assigned Crimea to
Ukraine (geopandas PR 2670); every other boundary is Natural Earth's de facto one.

Development-time only: reads the shapefile with ``pyshp`` (``pip install pyshp``), which the twin does
not depend on at run time.

    python scripts/build_countries.py [--wheel /tmp/gpd/geopandas-0.14.4-py3-none-any.whl]

Output (compact JSON, one country a line): a header (source, licence, version, date, coordinate
order, the ISO-3 fixes applied) and ``countries``: name, ``iso_a3``, continent and ``polygons``, a
list of rings, each a list of ``[lon_deg, lat_deg]`` rounded to 1e-3 deg, open (the first vertex is
not repeated). A country's rings combine by the even-odd rule (holes are rings too).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import itertools
import json
import sys
import zipfile
from pathlib import Path

import shapefile  # pyshp: build-time only

WHEEL = "/tmp/gpd/geopandas-0.14.4-py3-none-any.whl"
MEMBER = "geopandas/datasets/naturalearth_lowres/naturalearth_lowres."
OUT = Path(__file__).resolve().parents[1] / "twin" / "data" / "countries_110m.json"
DECIMALS = 3

# Natural Earth gives ISO_A3 = -99 to entities without an ISO 3166 code of their own; these are the
# codes used instead (user-assigned or Natural Earth's ADM0_A3), by name.
ISO_FIXES = {
    "France": "FRA",
    "Norway": "NOR",
    "Kosovo": "XKX",        # user-assigned code used by the EU and the IMF
    "Somaliland": "SOL",    # Natural Earth ADM0_A3
    "N. Cyprus": "CYN",     # Natural Earth ADM0_A3
}


def _ring(points: list[tuple[float, float]]) -> list[list[float]]:
    """One ring rounded to 1e-3 deg, consecutive duplicates and the closing vertex removed."""
    out: list[list[float]] = []
    for lon, lat in points:
        p = [round(float(lon), DECIMALS), round(float(lat), DECIMALS)]
        if not out or p != out[-1]:
            out.append(p)
    if len(out) > 1 and out[0] == out[-1]:
        out.pop()
    return out


def build(wheel: str) -> dict[str, object]:
    z = zipfile.ZipFile(wheel)
    reader = shapefile.Reader(shp=io.BytesIO(z.read(MEMBER + "shp")), dbf=io.BytesIO(z.read(MEMBER + "dbf")),
                              shx=io.BytesIO(z.read(MEMBER + "shx")),
                              encoding=z.read(MEMBER + "cpg").decode().strip() or "latin-1")
    countries = []
    fixed = {}
    for sr in reader.iterShapeRecords():
        rec = sr.record.as_dict()
        name = str(rec["name"]).strip()
        code = str(rec["iso_a3"]).strip()
        if code == "-99" or len(code) != 3:
            if name not in ISO_FIXES:
                raise SystemExit(f"{name}: iso_a3 {code!r} and no fix in ISO_FIXES")
            code = fixed[name] = ISO_FIXES[name]
        shape = sr.shape
        bounds = [*shape.parts, len(shape.points)]
        rings = [r for r in (_ring(shape.points[a:b]) for a, b in itertools.pairwise(bounds)) if len(r) >= 3]
        countries.append({"name": name, "iso_a3": code, "continent": str(rec["continent"]).strip(), "polygons": rings})
    codes = [c["iso_a3"] for c in countries]
    if len(set(codes)) != len(codes):
        raise SystemExit("duplicate ISO-3 codes")
    return {
        "source": "Natural Earth 1:110m Cultural Vectors, Admin 0 - Countries (ne_110m_admin_0_countries), "
                  "as shipped in geopandas 0.14.4 (datasets/naturalearth_lowres)",
        "licence": "public domain, Natural Earth",
        "version": "Natural Earth v5.1.1; geopandas: ISO_A3 -99 -> ADM0_A3, Crimea assigned to Ukraine",
        "date": dt.date.today().isoformat(),
        "coordinates": "[lon_deg, lat_deg] WGS84, rounded to 1e-3 deg; rings open, even-odd rule",
        "iso_fixes": fixed,  # the -99 codes replaced here, by name
        "countries": countries,
    }


def dump(data: dict[str, object]) -> str:
    """Compact JSON, the header first and one country a line."""
    countries = data["countries"]
    assert isinstance(countries, list)
    head = {k: v for k, v in data.items() if k != "countries"}
    lines = [json.dumps(head, ensure_ascii=False, separators=(",", ":"))[:-1] + ',"countries":[']
    lines += [json.dumps(c, ensure_ascii=False, separators=(",", ":")) + "," for c in countries]
    lines[-1] = lines[-1][:-1]
    lines.append("]}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", default=WHEEL, help="the geopandas 0.14.4 wheel (default: %(default)s)")
    ap.add_argument("--out", default=str(OUT), help="output JSON (default: twin/data/countries_110m.json)")
    args = ap.parse_args(argv)
    data = build(args.wheel)
    text = dump(data)
    json.loads(text)  # well-formed
    Path(args.out).write_text(text, encoding="utf-8")
    n = len(data["countries"])  # type: ignore[arg-type]
    print(f"{args.out}: {n} countries, {len(text.encode()) / 1024:.0f} KiB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
