"""References to schema limits in the alert-action table: ``field = "battery_soc"``, ``limit = "red_low"``.

A rule or condition that names a field and one of its limits takes everything that follows from
them from the one telemetry schema (:mod:`twin.schema.telemetry`) and the uid scheme of the
generated Grafana rules (:mod:`dashboards.alerts`): the alert rule uid, its title (label
``alertname``), the threshold and the comparison (above a ``*_high`` limit, below a ``*_low``
one), and the InfluxQL that reads the field's latest value per satellite. No number or uid is
copied into the table, so a changed limit cannot drift from the alert that acts on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from bridges.alerts.types import RuleError
from dashboards.alerts import RULE_LIMITS, limit_rule_title, limit_rule_uid
from twin.schema.telemetry import FIELD_BY_NAME, LIMITED_FIELDS, Field, Limits

LIMIT_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Limits))  # red_low, yellow_low, yellow_high, red_high


@dataclass(frozen=True)
class LimitRef:
    """One limit of one telemetry field."""

    field: Field
    limit: str  # a Limits attribute name

    @property
    def threshold(self) -> float:
        """The limit's value, in the field's unit."""
        value = getattr(self.field.limits, self.limit)
        assert value is not None  # checked by limit_ref()
        return float(value)

    @property
    def op(self) -> str:
        """The comparison that holds beyond the limit: ``>`` for a high limit, ``<`` for a low one."""
        return ">" if self.limit.endswith("_high") else "<"

    @property
    def uid(self) -> str:
        """The alert rule uid (Grafana's for red limits, the poller's for any)."""
        return limit_rule_uid(self.field.name, self.limit)

    @property
    def alertname(self) -> str:
        return limit_rule_title(self.field.name, self.limit)

    @property
    def in_grafana(self) -> bool:
        """Grafana has a provisioned rule for this limit (red limits only)."""
        return self.limit in RULE_LIMITS

    @property
    def query(self) -> str:
        """InfluxQL of each satellite's latest value of the field per run (booleans read as 1 and 0 by the poller).

        Grouped by ``run`` too, so an alert names its run and the bridge acts only on the twin's current one.
        """
        return f'SELECT last("{self.field.name}") FROM "{self.field.packet}" GROUP BY "sat", "run"'


def limit_ref(d: Mapping[str, Any], where: str) -> LimitRef | None:
    """The ``field``/``limit`` pair of a rule or condition table, or None if it has neither.

    Raises :class:`RuleError` naming ``where`` and the key for an unknown field, an unknown limit
    name or a limit the field does not have.
    """
    name, limit = d.get("field"), d.get("limit")
    if name is None and limit is None:
        return None
    limited = ", ".join(f.name for f in LIMITED_FIELDS)
    if not isinstance(name, str):
        raise RuleError(f"{where}.field: a telemetry field name is required with limit (one of {limited})")
    f = FIELD_BY_NAME.get(name)
    if f is None:
        raise RuleError(f"{where}.field: unknown telemetry field {name!r} (fields with limits: {limited})")
    if f.limits is None:
        raise RuleError(f"{where}.field: {name} has no limits (fields with limits: {limited})")
    has = [n for n in LIMIT_NAMES if getattr(f.limits, n) is not None]
    if not isinstance(limit, str) or limit not in LIMIT_NAMES:
        raise RuleError(f"{where}.limit: must name one of {name}'s limits ({', '.join(has)}), not {limit!r}")
    if limit not in has:
        raise RuleError(f"{where}.limit: {name} has no {limit} limit (it has {', '.join(has)})")
    return LimitRef(f, limit)
