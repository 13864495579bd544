"""Value types shared by the alert-action rule table and the InfluxDB poller: alerts, rule errors, fingerprints."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("firing", "resolved")
_UID_RE = re.compile(r"/alerting/grafana/([^/?#]+)/view")


class RuleError(ValueError):
    """An invalid rule table; the message names the rule and key."""


@dataclass(frozen=True)
class Alert:
    """One alert as Grafana's webhook (or the poller) describes it."""

    status: str
    labels: dict[str, str]
    fingerprint: str
    annotations: dict[str, str] = field(default_factory=dict)
    starts_at: str = ""
    ends_at: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    generator_url: str = ""

    @property
    def rule_uid(self) -> str:
        """The alert rule uid: a label, else parsed from ``generatorURL`` ('' if unknown)."""
        uid = self.labels.get("__alert_rule_uid__") or self.labels.get("rule_uid")
        if uid:
            return uid
        m = _UID_RE.search(self.generator_url)
        return m.group(1) if m else ""

    @classmethod
    def from_grafana(cls, d: Any) -> Alert:
        """Parse one element of a webhook's ``alerts``; raise ValueError naming the bad key."""
        if not isinstance(d, dict):
            raise ValueError("alert must be an object")
        status = d.get("status")
        if status not in STATUSES:
            raise ValueError(f"alert status must be firing or resolved, not {status!r}")
        labels = d.get("labels")
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise ValueError("alert labels must be an object of strings")
        fp = d.get("fingerprint") or fingerprint(labels)
        if not isinstance(fp, str):
            raise ValueError("alert fingerprint must be a string")
        ann = d.get("annotations") or {}
        values = d.get("values") or {}
        if not isinstance(ann, dict) or not isinstance(values, dict):
            raise ValueError("alert annotations and values must be objects")
        return cls(status, dict(labels), fp, {str(k): str(v) for k, v in ann.items()}, str(d.get("startsAt") or ""),
                   str(d.get("endsAt") or ""), values, str(d.get("generatorURL") or ""))


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable 16-hex-digit fingerprint of a label set (what the poller uses)."""
    text = "\x00".join(f"{k}\x01{labels[k]}" for k in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
