"""The alert-action rule table: which twin command an alert (from Grafana or the InfluxDB poller) triggers.

The table is TOML (default: ``dashboards/alert-actions.toml``)::

    [limits]                      # optional
    max_actions = 30              # global rate limit: at most this many commands ...
    window_s = 60                 # ... per this many seconds (all rules, all satellites)
    dedup_ttl_s = 86400           # how long a handled (fingerprint, status) is remembered

    [[rule]]
    name = "payload-temp-red"     # unique; named in errors and events
    field = "payload_temp_k"      # the alert of a schema limit: a telemetry field with limits ...
    limit = "red_high"            # ... and one of its limits (red_low, yellow_low, yellow_high, red_high)
    match = { severity = ["critical", "red"] }   # optional with field/limit: label == value (a list: any of)
    match_re = { sat = "STARLINK-.*" }   # optional: label fully matches the regex
    target = "sat"                # "sat": the satellite named by label `sat_label`; "fleet": fleet/cmd + `select`
    sat_label = "sat"             # default "sat"
    select = "*"                  # fleet target only: a selector of docs/mqtt.md
    min_interval_s = 60           # per rule, satellite and status: min seconds between two commands
    continue = false              # true: later rules are tried too (default: first match wins)
    firing = { command = "throttle", args = { factor = 0.5 } }
    resolved = { command = "throttle", args = { factor = 1.0 } }   # omit: nothing on resolve
    # args_from_labels = { device = "device" } inside firing/resolved: an argument from a label

Matcher key ``rule`` compares the Grafana alert rule uid: label ``__alert_rule_uid__`` or
``rule_uid``, else the uid in ``generatorURL`` (``.../alerting/grafana/<uid>/view``). ``field`` and
``limit`` stand for ``match = { rule = <uid> }`` with the uid that :mod:`dashboards.alerts` gives
the Grafana rule of that limit and the poller its condition (:mod:`bridges.alerts.limit_refs`),
so no uid or limit value is copied into the table. Grafana has rules for red limits only; a rule
on a yellow limit needs a ``[[condition]]`` on it. Rules for alerts of your own (your Grafana
rules, your conditions) match on labels or a uid written out.

``[[condition]]`` tables (see :mod:`bridges.alerts.poller`) evaluate alerts from InfluxDB without
Grafana; they are validated here too. Commands and arguments are checked against
``twin.schema.commands`` when the table loads, so a bad table fails at start with the rule and key.
"""

from __future__ import annotations

import re
import tomllib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from bridges.alerts.limit_refs import LimitRef, limit_ref
from bridges.alerts.poller import validate_condition
from bridges.alerts.types import STATUSES, Alert, RuleError
from twin.schema.commands import COMMANDS, CommandError, validate

# the shipped table: package data of the `dashboards` package (in a checkout, dashboards/alert-actions.toml)
DEFAULT_RULES: Traversable = resources.files("dashboards") / "alert-actions.toml"
_RULE_KEYS = {"name", "field", "limit", "match", "match_re", "target", "sat_label", "select", "min_interval_s",
              "continue", "firing", "resolved"}
_ACTION_KEYS = {"command", "args", "args_from_labels"}
_LIMIT_KEYS = {"max_actions", "window_s", "dedup_ttl_s"}


@dataclass(frozen=True)
class ActionSpec:
    command: str
    args: dict[str, Any]
    args_from_labels: dict[str, str]


@dataclass(frozen=True)
class Rule:
    name: str
    match: dict[str, tuple[str, ...]]
    match_re: dict[str, re.Pattern[str]]
    target: str
    sat_label: str
    select: Any
    min_interval_s: float
    cont: bool
    actions: dict[str, ActionSpec | None]
    ref: LimitRef | None = None  # the schema limit the rule names (its uid is in match["rule"])

    def matches(self, alert: Alert) -> bool:
        def get(key: str) -> str | None:
            return alert.rule_uid or None if key == "rule" else alert.labels.get(key)

        return (all(get(k) in vs for k, vs in self.match.items())
                and all((v := get(k)) is not None and p.fullmatch(v) for k, p in self.match_re.items()))


@dataclass
class Action:
    """A command to send for an alert; ``suppressed`` says why it is not sent (None: send it)."""

    rule: str
    status: str
    command: str
    args: dict[str, Any]
    fingerprint: str
    alertname: str
    sat: str | None = None
    select: Any = None
    suppressed: str | None = None


@dataclass
class RuleTable:
    rules: list[Rule]
    max_actions: int = 30
    window_s: float = 60.0
    dedup_ttl_s: float = 86400.0
    conditions: list[dict[str, Any]] = field(default_factory=list)


def _err(where: str, msg: str) -> RuleError:
    return RuleError(f"{where}: {msg}")


def _number(v: Any, where: str, minimum: float = 0.0) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < minimum:
        raise _err(where, f"must be a number >= {minimum:g}, not {v!r}")
    return float(v)


def _action(d: Any, where: str) -> ActionSpec | None:
    if d is None:
        return None
    if not isinstance(d, dict):
        raise _err(where, "must be a table { command = ..., args = {...} }")
    extra = sorted(set(d) - _ACTION_KEYS)
    if extra:
        raise _err(f"{where}.{extra[0]}", f"unknown key (allowed: {', '.join(sorted(_ACTION_KEYS))})")
    cmd, args, from_labels = d.get("command"), d.get("args", {}), d.get("args_from_labels", {})
    if cmd not in COMMANDS:
        raise _err(f"{where}.command", f"unknown command {cmd!r} (one of {', '.join(COMMANDS)})")
    if not isinstance(args, dict) or not isinstance(from_labels, dict):
        raise _err(f"{where}.args", "args and args_from_labels must be tables")
    known = {a.name for a in COMMANDS[cmd].args}
    for k, v in from_labels.items():
        if k not in known or not isinstance(v, str):
            raise _err(f"{where}.args_from_labels.{k}", f"must name an argument of {cmd} and a label")
    try:  # arguments that come from labels are checked when an alert supplies them
        validate(COMMANDS, cmd, {**args, **{k: _sample(cmd, k) for k in from_labels if k not in args}})
    except CommandError as exc:
        raise _err(f"{where}.args.{exc.field}" if exc.field else f"{where}.args", exc.message) from None
    return ActionSpec(cmd, dict(args), dict(from_labels))


def _sample(cmd: str, arg: str) -> Any:
    a = next(x for x in COMMANDS[cmd].args if x.name == arg)
    return a.choices[0] if a.choices else ("x" if a.type == "str" else a.min if a.min is not None else 0)


def _rule(d: Any, i: int, names: set[str]) -> Rule:
    if not isinstance(d, dict):
        raise _err(f"rule[{i}]", "must be a table")
    name = d.get("name")
    if not isinstance(name, str) or not name:
        raise _err(f"rule[{i}].name", "a non-empty string is required")
    where = f"rule {name!r}"
    if name in names:
        raise _err(f"{where}.name", "duplicate rule name")
    extra = sorted(set(d) - _RULE_KEYS)
    if extra:
        raise _err(f"{where}.{extra[0]}", f"unknown key (allowed: {', '.join(sorted(_RULE_KEYS))})")
    ref = limit_ref(d, where)
    match, match_re = d.get("match", {}), d.get("match_re", {})
    if not isinstance(match, dict) or not isinstance(match_re, dict) or not (match or match_re or ref):
        raise _err(f"{where}.match", "a table of label matchers is required (match and/or match_re, "
                                     "or field and limit)")
    if ref is not None and "rule" in match:
        raise _err(f"{where}.match.rule", f"field and limit already match rule uid {ref.uid!r}: remove one")
    m: dict[str, tuple[str, ...]] = {}
    for k, v in match.items():
        vs = tuple(v) if isinstance(v, list) else (v,)
        if not vs or not all(isinstance(x, str) for x in vs):
            raise _err(f"{where}.match.{k}", "must be a string or a list of strings")
        m[k] = vs
    if ref is not None:
        m["rule"] = (ref.uid,)
    mre: dict[str, re.Pattern[str]] = {}
    for k, v in match_re.items():
        if not isinstance(v, str):
            raise _err(f"{where}.match_re.{k}", "must be a regular expression string")
        try:
            mre[k] = re.compile(v)
        except re.error as exc:
            raise _err(f"{where}.match_re.{k}", f"bad regular expression ({exc})") from None
    target = d.get("target", "sat")
    if target not in ("sat", "fleet"):
        raise _err(f"{where}.target", f"must be 'sat' or 'fleet', not {target!r}")
    sat_label = d.get("sat_label", "sat")
    if not isinstance(sat_label, str):
        raise _err(f"{where}.sat_label", "must be a string")
    select = d.get("select")
    if target == "fleet" and not (select == "*" or isinstance(select, dict) and select):
        raise _err(f"{where}.select", "a fleet rule needs select = \"*\" or a selector table")
    if target == "sat" and select is not None:
        raise _err(f"{where}.select", "only fleet rules take a selector")
    cont = d.get("continue", False)
    if not isinstance(cont, bool):
        raise _err(f"{where}.continue", "must be true or false")
    actions = {s: _action(d.get(s), f"{where}.{s}") for s in STATUSES}
    names.add(name)
    return Rule(name, m, mre, target, sat_label, select, _number(d.get("min_interval_s", 0), f"{where}.min_interval_s"),
                cont, actions, ref)


def parse_table(doc: Mapping[str, Any]) -> RuleTable:
    """Validate a decoded table; raise :class:`RuleError` naming the rule and key."""
    extra = sorted(set(doc) - {"limits", "rule", "condition"})
    if extra:
        raise _err(extra[0], "unknown top-level key (allowed: limits, rule, condition)")
    limits = doc.get("limits", {})
    if not isinstance(limits, dict):
        raise _err("limits", "must be a table")
    bad = sorted(set(limits) - _LIMIT_KEYS)
    if bad:
        raise _err(f"limits.{bad[0]}", f"unknown key (allowed: {', '.join(sorted(_LIMIT_KEYS))})")
    rules_doc, conds = doc.get("rule", []), doc.get("condition", [])
    if not isinstance(rules_doc, list) or not isinstance(conds, list):
        raise _err("rule", "use [[rule]] and [[condition]] arrays of tables")
    names: set[str] = set()
    rules = [_rule(r, i, names) for i, r in enumerate(rules_doc)]
    max_actions = _number(limits.get("max_actions", 30), "limits.max_actions", 1)
    if not float(max_actions).is_integer():
        raise _err("limits.max_actions", "must be an integer")
    cnames: set[str] = set()
    conditions = [validate_condition(c, i, cnames) for i, c in enumerate(conds)]
    for r in rules:
        if r.ref is not None and not r.ref.in_grafana and r.ref.uid not in cnames:
            raise _err(f"rule {r.name!r}.limit", f"Grafana has alert rules for red limits only: add a [[condition]] "
                                                 f"with field = {r.ref.field.name!r} and limit = {r.ref.limit!r}")
    return RuleTable(rules, int(max_actions), _number(limits.get("window_s", 60), "limits.window_s", 0.001),
                     _number(limits.get("dedup_ttl_s", 86400), "limits.dedup_ttl_s"), conditions)


def load_table(path: str | Path | None = None) -> RuleTable:
    """Read and validate a rule table file (default: the shipped ``dashboards/alert-actions.toml``)."""
    p: Path | Traversable = Path(path) if path else DEFAULT_RULES
    try:
        doc = tomllib.loads(p.read_text())
    except OSError as exc:
        raise RuleError(f"{p}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{p}: not valid TOML ({exc})") from None
    try:
        return parse_table(doc)
    except RuleError as exc:
        raise RuleError(f"{p}: {exc}") from None


class Planner:
    """Alerts -> actions, with dedup by fingerprint + status and the rate limits. No I/O; not thread-safe."""

    def __init__(self, table: RuleTable) -> None:
        self.table = table
        self.seen: dict[str, tuple[str, str, float]] = {}  # fingerprint -> (status, startsAt, when)
        self.last_action: dict[tuple[str, str, str], float] = {}  # (rule, sat or *, status) -> when
        self.recent: deque[float] = deque()  # times of sent actions (global window)
        self.counters: dict[str, int] = {"alerts": 0, "duplicates": 0, "unmatched": 0, "actions": 0, "suppressed": 0}

    def is_duplicate(self, alert: Alert, now: float) -> bool:
        prev = self.seen.get(alert.fingerprint)
        if prev is None or now - prev[2] > self.table.dedup_ttl_s or prev[0] != alert.status:
            return False
        return alert.status == "resolved" or prev[1] == alert.starts_at

    def plan(self, alert: Alert, now: float, current_run: str | None = None) -> list[Action]:
        """The actions for ``alert`` at time ``now`` (seconds, any monotonic clock); [] for a duplicate.

        ``current_run``: the twin's run as its birth says; an alert labelled with another ``run``
        (an earlier run whose samples still lie ahead of the wall clock) is suppressed (``other_run``).
        """
        self.counters["alerts"] += 1
        if self.is_duplicate(alert, now):
            self.counters["duplicates"] += 1
            return []
        self._expire(now)
        out: list[Action] = []
        matched = False
        for rule in self.table.rules:
            if not rule.matches(alert):
                continue
            matched = True
            spec = rule.actions[alert.status]
            if spec is not None:
                out.append(self._decide(rule, spec, alert, now, current_run))
            if not rule.cont:
                break
        if not matched:
            self.counters["unmatched"] += 1
        if not any(a.suppressed and a.suppressed.startswith("rate_limited") for a in out):
            self.seen[alert.fingerprint] = (alert.status, alert.starts_at, now)  # retried on a repeat otherwise
        return out

    def _decide(self, rule: Rule, spec: ActionSpec, alert: Alert, now: float,
                current_run: str | None = None) -> Action:
        name = alert.labels.get("alertname", "")
        sat = alert.labels.get(rule.sat_label) if rule.target == "sat" else None
        act = Action(rule.name, alert.status, spec.command, dict(spec.args), alert.fingerprint, name, sat,
                     rule.select if rule.target == "fleet" else None)
        try:
            for arg, label in spec.args_from_labels.items():
                if label in alert.labels:
                    act.args[arg] = _label_value(spec.command, arg, alert.labels[label])
            act.args = validate(COMMANDS, spec.command, act.args)[1]
            act.args = {k: v for k, v in act.args.items() if v is not None}
        except (CommandError, ValueError) as exc:
            act.suppressed = f"bad_label_argument: {exc}"
        key = (rule.name, sat or "*", alert.status)
        run = alert.labels.get("run")
        if act.suppressed:
            pass
        elif run is not None and current_run is not None and run != current_run:
            act.suppressed = f"other_run: alert of run {run}, the twin's current run is {current_run}"
        elif rule.target == "sat" and not sat:
            act.suppressed = f"no_sat_label: alert has no label {rule.sat_label!r}"
        elif now - self.last_action.get(key, float("-inf")) < rule.min_interval_s:
            act.suppressed = "rate_limited_rule"
        elif len(self.recent) >= self.table.max_actions:
            act.suppressed = "rate_limited_global"
        else:
            self.last_action[key] = now
            self.recent.append(now)
            self.counters["actions"] += 1
            return act
        self.counters["suppressed"] += 1
        return act

    def _expire(self, now: float) -> None:
        while self.recent and now - self.recent[0] >= self.table.window_s:
            self.recent.popleft()
        if len(self.seen) > 10_000:
            self.seen = {k: v for k, v in self.seen.items() if now - v[2] <= self.table.dedup_ttl_s}


def _label_value(cmd: str, arg: str, text: str) -> Any:
    a = next(x for x in COMMANDS[cmd].args if x.name == arg)
    if a.type == "int":
        return int(text)
    if a.type == "float":
        return float(text)
    return text
