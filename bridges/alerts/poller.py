"""Alerts without Grafana: evaluate the rule table's ``[[condition]]`` tables against InfluxDB 1.x.

Each condition is one InfluxQL query through the v1 ``/query`` endpoint (urllib3), a comparison
and a pending period, like a Grafana alert rule. Most name a limit of the telemetry schema, and
the rest follows from it (:mod:`bridges.alerts.limit_refs`)::

    [[condition]]
    field = "payload_temp_k"          # a telemetry field with limits (twin/schema/telemetry.py)
    limit = "red_high"                # red_low | yellow_low | yellow_high | red_high
    for_s = 30
    labels = { severity = "critical" }
    # derived: uid = "orbitwin-payload_temp_k-red-high" (the Grafana rule's), alertname =
    # "payload_temp_k red high", query = 'SELECT last("payload_temp_k") FROM "hk" GROUP BY "sat"',
    # op = ">" (a *_high limit; "<" for *_low), threshold = the schema's red_high
    # query = '...'                   # optional: another query (e.g. with a time bound)

A condition of your own spells everything out::

    [[condition]]
    uid = "payload-warm"              # becomes label rule_uid (match it with `rule = "..."`)
    alertname = "PayloadWarm"         # label alertname (default: the uid)
    query = 'SELECT last("payload_temp_k") FROM "hk" WHERE time > now() - 10m GROUP BY "sat"'
    op = ">"                          # > >= < <= == !=
    threshold = 340.0
    for_s = 0                         # the condition must hold this long (wall seconds) before firing
    labels = { severity = "warning" }
    annotations = { summary = "payload node above 340 K" }

Every series of the result is one alert instance: its labels are ``alertname``, ``rule_uid``, the
condition's ``labels`` and the series' tags (``GROUP BY "sat"`` gives label ``sat``); its value
is the first non-null column of the series' last row (a boolean reads as 1 or 0). A series that
was firing and no longer satisfies the condition (or is no longer returned) is resolved.
Fingerprints are a hash of the labels, so they are stable across polls and restarts.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import urllib3

from bridges.alerts.limit_refs import limit_ref
from bridges.alerts.types import Alert, RuleError, fingerprint

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}
_FROM_LIMIT = {"uid", "alertname", "op", "threshold"}  # what a condition naming a schema limit takes from it
_COND_KEYS = _FROM_LIMIT | {"field", "limit", "query", "for_s", "labels", "annotations"}


class PollError(RuntimeError):
    """A query failed (HTTP error, InfluxQL error, unreachable server)."""


def validate_condition(d: Any, i: int, names: set[str]) -> dict[str, Any]:
    """Check one ``[[condition]]`` table; raise RuleError naming the condition and key.

    A condition names a schema limit (``field`` and ``limit``: uid, alertname, query, op and
    threshold follow from it; ``query`` may still be given, e.g. with a time bound) or spells out
    ``uid``, ``query``, ``op`` and ``threshold`` itself.
    """
    if not isinstance(d, dict):
        raise RuleError(f"condition[{i}]: must be a table")
    extra = sorted(set(d) - _COND_KEYS)
    ref = limit_ref(d, f"condition[{i}]")
    if ref is not None:
        given = sorted(set(d) & _FROM_LIMIT)
        if given:
            raise RuleError(f"condition[{i}].{given[0]}: comes from field and limit ({ref.field.name} {ref.limit}: "
                            f"uid {ref.uid!r}, {ref.op} {ref.threshold:g}); remove it, or drop field and limit "
                            f"to write your own condition")
        d = {"uid": ref.uid, "alertname": ref.alertname, "query": ref.query, "op": ref.op,
             "threshold": ref.threshold} | d
    uid = d.get("uid")
    if not isinstance(uid, str) or not uid:
        raise RuleError(f"condition[{i}].uid: a non-empty string is required (or field and limit)")
    where = f"condition {uid!r}"
    if uid in names:
        raise RuleError(f"{where}.uid: duplicate condition uid")
    if extra:
        raise RuleError(f"{where}.{extra[0]}: unknown key (allowed: {', '.join(sorted(_COND_KEYS))})")
    q = d.get("query")
    if not isinstance(q, str) or not q.lstrip().upper().startswith("SELECT") or ";" in q:
        raise RuleError(f"{where}.query: must be one InfluxQL SELECT statement")
    if d.get("op", ">") not in OPS:
        raise RuleError(f"{where}.op: must be one of {' '.join(OPS)}")
    thr, for_s = d.get("threshold"), d.get("for_s", 0)
    for key, v in (("threshold", thr), ("for_s", for_s)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (key == "for_s" and v < 0):
            raise RuleError(f"{where}.{key}: must be a number" + (" >= 0" if key == "for_s" else ""))
    for key in ("labels", "annotations"):
        v = d.get(key, {})
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            raise RuleError(f"{where}.{key}: must be a table of strings")
    name = d.get("alertname", uid)
    if not isinstance(name, str):
        raise RuleError(f"{where}.alertname: must be a string")
    names.add(uid)
    return {"uid": uid, "alertname": name, "query": q, "op": d.get("op", ">"), "threshold": float(thr),
            "for_s": float(for_s), "labels": dict(d.get("labels", {})), "annotations": dict(d.get("annotations", {}))}


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Instance:
    labels: dict[str, str]
    pending_since: float
    firing: bool = False
    starts_at: str = ""
    value: float = 0.0


@dataclass
class InfluxPoller:
    """Evaluates conditions against an InfluxDB 1.x database; ``evaluate()`` returns state changes as alerts."""

    url: str
    db: str
    conditions: list[dict[str, Any]]
    username: str | None = None
    password: str | None = None
    timeout_s: float = 10.0
    counters: dict[str, int] = field(default_factory=lambda: {"polls": 0, "queries": 0, "query_errors": 0,
                                                             "firing": 0, "resolved": 0})
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.http = urllib3.PoolManager(timeout=urllib3.Timeout(total=self.timeout_s),
                                        retries=urllib3.Retry(total=1, backoff_factor=0.2))
        self.state: dict[str, _Instance] = {}

    def query(self, q: str) -> list[tuple[dict[str, str], float]]:
        """Run one SELECT; return (tags, value) per series (booleans are 1 and 0; series without a value are left out)."""
        fields = {"db": self.db, "q": q, "epoch": "ms"}
        if self.username:
            fields |= {"u": self.username, "p": self.password or ""}
        try:
            r = self.http.request("GET", self.url.rstrip("/") + "/query", fields=fields)
        except urllib3.exceptions.HTTPError as exc:
            raise PollError(f"InfluxDB unreachable: {exc}") from None
        try:
            body = json.loads(r.data or b"{}")
        except ValueError:
            raise PollError(f"HTTP {r.status}: not JSON") from None
        errs = [res["error"] for res in body.get("results", []) if "error" in res]
        if r.status != 200 or "error" in body or errs:
            raise PollError(f"HTTP {r.status}: {body.get('error') or '; '.join(errs)}")
        out: list[tuple[dict[str, str], float]] = []
        for res in body.get("results", []):
            for s in res.get("series", []):
                if not s.get("values"):
                    continue
                row = s["values"][-1]
                vals = [v for c, v in zip(s["columns"], row) if c != "time" and isinstance(v, (int, float))]
                if vals:
                    out.append(({str(k): str(v) for k, v in (s.get("tags") or {}).items() if v != ""}, float(vals[0])))
        return out

    def evaluate(self, now: float | None = None) -> list[Alert]:
        """One poll of every condition; the alerts that started firing or resolved since the last poll."""
        now = time.time() if now is None else now
        self.counters["polls"] += 1
        changes: list[Alert] = []
        for c in self.conditions:
            self.counters["queries"] += 1
            try:
                rows = self.query(c["query"])
            except PollError as exc:  # keep the condition's state: no data is not "resolved" on an outage
                self.counters["query_errors"] += 1
                self.errors = (self.errors + [f"{c['uid']}: {exc}"])[-20:]
                continue
            holding: set[str] = set()
            for tags, value in rows:
                labels = {"alertname": c["alertname"], "rule_uid": c["uid"], **c["labels"], **tags}
                fp = fingerprint(labels)
                if not OPS[c["op"]](value, c["threshold"]):
                    continue
                holding.add(fp)
                inst = self.state.setdefault(fp, _Instance(labels, now))
                inst.value = value
                if not inst.firing and now - inst.pending_since >= c["for_s"]:
                    inst.firing, inst.starts_at = True, _iso(now)
                    self.counters["firing"] += 1
                    changes.append(self._alert(c, fp, inst, "firing", now))
            for fp in [fp for fp, i in self.state.items() if i.labels["rule_uid"] == c["uid"] and fp not in holding]:
                inst = self.state.pop(fp)
                if inst.firing:
                    self.counters["resolved"] += 1
                    changes.append(self._alert(c, fp, inst, "resolved", now))
        return changes

    @staticmethod
    def _alert(c: dict[str, Any], fp: str, inst: _Instance, status: str, now: float) -> Alert:
        return Alert(status, dict(inst.labels), fp, dict(c["annotations"]), inst.starts_at,
                     _iso(now) if status == "resolved" else "0001-01-01T00:00:00Z", {"A": inst.value},
                     f"influxql:{c['uid']}")

    def run(self, handle: Callable[[Alert], Any], interval_s: float, stop: threading.Event) -> None:
        """Poll every ``interval_s`` until ``stop`` is set, passing each change to ``handle``."""
        while not stop.is_set():
            t0 = time.monotonic()
            for alert in self.evaluate():
                handle(alert)
            stop.wait(max(0.0, interval_s - (time.monotonic() - t0)))

    def status(self) -> dict[str, Any]:
        return {**self.counters, "pending_or_firing": len(self.state), "last_errors": self.errors[-5:]}
