"""The satellite design: every model's parameter section, loaded from one TOML file."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from twin.core.battery import BatteryParams
from twin.core.fdir import FdirParams
from twin.core.network.params import NetworkParams
from twin.core.params import DesignError, build
from twin.core.payload import PayloadParams
from twin.core.power import PowerParams
from twin.core.radiation import RadiationParams
from twin.core.solar_array import SolarArrayParams
from twin.core.thermal import ThermalParams

DEFAULT_DESIGN_NAME = "v3_compute_sat.toml"


@dataclass(frozen=True)
class Design:
    """A validated satellite design (one section per model)."""

    solar_array: SolarArrayParams
    battery: BatteryParams
    power: PowerParams
    thermal: ThermalParams
    radiation: RadiationParams
    payload: PayloadParams
    fdir: FdirParams
    network: NetworkParams
    name: str = "v3-compute"


def design_from_dict(data: dict[str, Any], source: str = "<design>") -> Design:
    """Build a :class:`Design` from parsed TOML; raise :class:`DesignError` naming the key."""
    sections = {f.name: f.type for f in fields(Design) if f.name != "name"}
    hints = {name: cls for name, cls in Design.__annotations__.items()}
    unknown = sorted(set(data) - set(sections) - {"name"})
    if unknown:
        raise DesignError(unknown[0], f"unknown section in {source} (allowed: {', '.join(sorted(sections))})")
    kwargs: dict[str, Any] = {}
    for name in sections:
        if name not in data:
            raise DesignError(name, f"missing section [{name}] in {source}")
        cls = globals()[hints[name]] if isinstance(hints[name], str) else hints[name]
        if cls is ThermalParams:  # the array area is defined once, in [solar_array]
            kwargs[name] = ThermalParams.from_table(data[name], name, array_area_m2=kwargs["solar_array"].area_m2)
            continue
        from_table = getattr(cls, "from_table", None)
        kwargs[name] = from_table(data[name], name) if callable(from_table) else build(cls, data[name], name)
    if "name" in data:
        if not isinstance(data["name"], str):
            raise DesignError("name", "expected a string")
        kwargs["name"] = data["name"]
    return Design(**kwargs)


def load_design(path: str | Path | None = None) -> Design:
    """Load a design TOML file; ``None`` loads the V3 compute satellite shipped with the package."""
    if path is None:
        text = (resources.files("twin") / "data" / DEFAULT_DESIGN_NAME).read_text()
        source = DEFAULT_DESIGN_NAME
    else:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise DesignError("<file>", f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DesignError("<toml>", f"{source}: {exc}") from exc
    return design_from_dict(data, source)
