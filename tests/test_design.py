"""The shipped design file and the errors a broken design file gives."""

import re
import tomllib
from importlib import resources

import pytest

from twin.core.design import design_from_dict, load_design
from twin.core.params import DesignError

TEXT = resources.files("twin").joinpath("data", "v3_compute_sat.toml").read_text()


def test_every_key_of_the_shipped_design_states_its_source():
    for line in TEXT.splitlines():
        if re.match(r"^\w+\s*=", line) and not line.startswith("name"):
            assert "#" in line, line
            comment = line.split("#", 1)[1].lower()
            assert re.search(r"estimate|unconfirmed|physics\.md|nist|model setting|\(|:|per |=", comment), line


def test_shipped_design_loads():
    d = load_design()
    assert d.payload.n_devices == 8 and d.battery.cells_series > 0 and d.thermal.payload_heat_capacity_j_k > 0


@pytest.mark.parametrize("mutate,key", [
    (lambda d: d["battery"].update(cell_capacity_ah=-5.0), "battery.cell_capacity_ah"),
    (lambda d: d["payload"].update(n_devices="eight"), "payload.n_devices"),
    (lambda d: d["thermal"].update(bogus_key=1.0), "thermal.bogus_key"),
    (lambda d: d.pop("fdir"), "fdir"),
    (lambda d: d.update(extra={}), "extra"),
    (lambda d: d["payload"].update(device_idle_w=5000.0), "payload.device_idle_w"),
    (lambda d: d["radiation"].update(solar_phase_protons="mid"), "radiation.solar_phase_protons"),
])
def test_invalid_design_names_the_key(mutate, key):
    data = tomllib.loads(TEXT)
    mutate(data)
    with pytest.raises(DesignError) as exc:
        design_from_dict(data)
    assert exc.value.key == key
    assert key in str(exc.value)


def test_broken_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[payload\nn_devices = 8")
    with pytest.raises(DesignError, match="bad.toml"):
        load_design(bad)
    with pytest.raises(DesignError, match="cannot read"):
        load_design(tmp_path / "nope.toml")
