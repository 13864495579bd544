import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from twin.core.catalogue import CatalogueError, load_catalogue, parse_tle_text

CAT = load_catalogue()


def test_shipped_catalogue_has_every_satellite():
    assert len(CAT) == 9543
    assert CAT.names[0] == "STARLINK-1008"
    assert len(set(CAT.norad_ids)) == 9543


def test_select_by_name_pattern_shell_and_count():
    sel = CAT.select(names="STARLINK-1*")
    assert all(n.startswith("STARLINK-1") for n in sel.names)
    shell = CAT.select(alt_km=(535, 560), inc_deg=(52.5, 53.5))
    assert len(shell) > 1000  # the 540 km / 53 deg shell (Bassa et al. 2022) holds ~1,400 here
    assert np.all(np.abs(shell.inclination_deg - 53.0) <= 0.5)
    assert np.all((shell.mean_altitude_m >= 535e3) & (shell.mean_altitude_m <= 560e3))
    assert len(CAT.select(alt_km=(540, 560), count=7)) == 7
    both = CAT.select(names="STARLINK-1008,STARLINK-1012")
    assert both.names == ("STARLINK-1008", "STARLINK-1012")


def test_empty_selection_is_an_error():
    with pytest.raises(CatalogueError, match="no satellite"):
        CAT.select(names="NOPE-*")


def test_bad_tle_names_the_line(tmp_path):
    bad = tmp_path / "bad.tle"
    text = "\n".join([CAT.names[0], CAT.line1[0], CAT.line2[0], "SAT-X", "1 garbage", "2 garbage"])
    bad.write_text(text)
    with pytest.raises(CatalogueError, match="line 5"):
        load_catalogue(bad)
    with pytest.raises(CatalogueError, match="cannot read"):
        load_catalogue(tmp_path / "missing.tle")


def test_checksum_mismatch_detected():
    l1 = CAT.line1[0]
    broken = l1[:68] + str((int(l1[68]) + 1) % 10)
    with pytest.raises(CatalogueError, match="checksum"):
        parse_tle_text(f"X\n{broken}\n{CAT.line2[0]}\n")


def test_two_line_format_without_names():
    cat = parse_tle_text(f"{CAT.line1[0]}\n{CAT.line2[0]}\n")
    assert cat.names == ("NORAD-44714",)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_parser_never_raises_anything_but_catalogue_error(text):
    try:
        parse_tle_text(text)
    except CatalogueError:
        pass
