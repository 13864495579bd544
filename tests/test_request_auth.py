"""Signed requests (twin.contract.request_auth): the canonical form, the MAC, the window, replay, rights, keys.

Property tests (hypothesis) for the pure verifier; the key file loader; the signing CLI options;
and the Python snippet of docs/mqtt.md ("Signed requests"), executed against the verifier.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.contract.request_auth import (AUTH_KEY, Key, KeyFileError, KeyRights, NonceCache, RequestVerifier, Signer,
                                        canonical, keyring_from_dict, sign, signing_input,
                                        strict_canonical_loads, AuthError)
from twin.contract.request_parser import parse_request
from twin.schema.commands import Reason

SECRET = b"0123456789abcdef0123456789abcdef"
TOPIC = "orbitwin/v1/sat/STARLINK-1008/cmd"
FLEET = "orbitwin/v1/fleet/cmd"
NOW = 1_796_000_000
GUIDE = Path(__file__).resolve().parents[1] / "docs" / "mqtt.md"


def verifier(rights: KeyRights | None = None, **kw: Any) -> RequestVerifier:
    rights = rights or KeyRights(frozenset({"*"}), frozenset({"*"}), True)
    return RequestVerifier({"ops-1": Key("ops-1", SECRET, rights)}, **kw)


def signed(request: dict[str, Any], topic: str = TOPIC, *, iat: int = NOW, nonce: str = "n" * 16,
           kid: str = "ops-1", secret: bytes = SECRET, client: str = "ops-console") -> bytes:
    return sign(topic, request, kid, secret, iat=iat, nonce=nonce, client=client)


THROTTLE = {"command": "throttle", "args": {"factor": 0.5}, "id": "thr-1"}

# JSON values with NFC text (what a signer may sign)
nfc_text = st.text(max_size=12).map(lambda s: unicodedata.normalize("NFC", s)).filter(
    lambda s: unicodedata.is_normalized("NFC", s))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.floats(allow_nan=False, allow_infinity=False)
    | nfc_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(nfc_text, inner, max_size=4), max_leaves=12)
requests = st.builds(lambda name, args, rid: {"command": name, "args": args, "id": rid},
                     st.sampled_from(["throttle", "set_payload_load", "enter_safe_mode"]),
                     st.dictionaries(nfc_text, json_values, max_size=4), nfc_text.filter(bool))
nonces = st.text("abcdefABCDEF0123456789_-", min_size=16, max_size=64)


@settings(max_examples=150, deadline=None)
@given(requests, nonces, st.integers(-30, 30))
def test_a_signed_request_verifies_and_yields_exactly_the_request(req: dict[str, Any], nonce: str, skew: int) -> None:
    v = verifier()
    payload = signed(req, nonce=nonce, iat=NOW + skew)
    out = v.verify(TOPIC, "cmd", False, payload, NOW)
    assert out.ok and out.authenticated and out.kid == "ops-1" and out.client == "ops-console"
    assert out.body == req
    # the same bytes again: replayed; nothing about them changed
    again = v.verify(TOPIC, "cmd", False, payload, NOW)
    assert (again.ok, again.reason) == (False, Reason.REPLAYED)


@settings(max_examples=150, deadline=None)
@given(requests, st.data())
def test_any_change_to_a_signed_payload_is_unauthenticated(req: dict[str, Any], data: st.DataObject) -> None:
    payload = signed(req)
    k = data.draw(st.integers(0, len(payload) - 1))
    b = data.draw(st.integers(0, 255).filter(lambda x: x != payload[k]))
    mutated = payload[:k] + bytes([b]) + payload[k + 1:]
    out = verifier().verify(TOPIC, "cmd", False, mutated, NOW)
    assert not out.ok and out.reason == Reason.UNAUTHENTICATED
    cut = data.draw(st.integers(0, len(payload) - 1))
    out = verifier().verify(TOPIC, "cmd", False, payload[:cut], NOW)
    assert not out.ok and out.reason == Reason.UNAUTHENTICATED


@settings(max_examples=100, deadline=None)
@given(requests, st.sampled_from([FLEET, "orbitwin/v1/sat/STARLINK-1012/cmd", "orbitwin/v1/sat/STARLINK-1008/fault",
                                  "orbitwin/v2/sat/STARLINK-1008/cmd", "orbitwin/v1/sat/STARLlNK-1008/cmd"]))
def test_a_request_signed_for_one_topic_fails_on_any_other(req: dict[str, Any], other: str) -> None:
    out = verifier().verify(other, "cmd", other == FLEET, signed(req), NOW)
    assert (out.ok, out.reason, out.field) == (False, Reason.UNAUTHENTICATED, "auth.sig")


@settings(max_examples=100, deadline=None)
@given(requests, st.one_of(st.integers(31, 10**9), st.integers(-10**9, -31)))
def test_an_issue_time_outside_the_window_is_stale_either_way(req: dict[str, Any], skew: int) -> None:
    out = verifier(window_s=30).verify(TOPIC, "cmd", False, signed(req, iat=max(NOW + skew, 0)), NOW)
    assert (out.ok, out.reason, out.field) == (False, Reason.STALE, "auth.iat")


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_canonical_form_round_trips_and_is_the_only_accepted_spelling(value: Any) -> None:
    obj = {"x": value}
    data = canonical(obj)
    assert strict_canonical_loads(data) == obj
    spaced = json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()
    if spaced != data:
        with pytest.raises(AuthError):
            strict_canonical_loads(spaced)


@pytest.mark.parametrize("payload, why", [
    (b'{"b":1,"a":2}', "canonical form"),  # keys out of order
    (b'{"a":1,"a":2}', "duplicate key"),
    (b'{"a": 1}', "canonical form"),  # whitespace
    (b'{"a":"\\u0041"}', "canonical form"),  # an escape where none is needed
    (b'{"a":1.50}', "canonical form"),
    (b'{"a":1E3}', "canonical form"),
    (b'{"a":-0}', "canonical form"),
    (b'{"a":NaN}', "not canonical JSON"),
    (b'{"a":1e999}', "not JSON compliant"),  # inf
    ('{"a":"cafe\u0301"}'.encode(), "NFC"),  # decomposed: a look-alike of the NFC "café"
    (b'{"a":"\\ud800"}', "not valid Unicode"),
    (b'\xff', "not canonical JSON"),
    (b'[1]', "JSON object"),
])
def test_non_canonical_input_is_rejected_not_normalised(payload: bytes, why: str) -> None:
    with pytest.raises(AuthError, match=why) as exc:
        strict_canonical_loads(payload)
    assert exc.value.reason == Reason.UNAUTHENTICATED


def test_a_reordered_signed_payload_fails_although_its_mac_is_right() -> None:
    payload = signed(THROTTLE)
    obj = json.loads(payload)
    reordered = json.dumps({k: obj[k] for k in reversed(list(obj))}, separators=(",", ":"),
                           ensure_ascii=False).encode()
    assert json.loads(reordered) == obj  # the same request, spelt differently
    out = verifier().verify(TOPIC, "cmd", False, reordered, NOW)
    assert (out.reason, out.field) == (Reason.UNAUTHENTICATED, "payload")
    # duplicated keys: the second "command" would win in a lenient parser
    dup = payload[:-1] + b',"command":"enter_safe_mode"}'
    out = verifier().verify(TOPIC, "cmd", False, dup, NOW)
    assert (out.reason, out.field) == (Reason.UNAUTHENTICATED, "payload")


def test_rights_commands_faults_and_fleet() -> None:
    rights = KeyRights(frozenset({"throttle"}), frozenset({"latchup"}), fleet=False)
    v = verifier(rights)
    assert v.verify(TOPIC, "cmd", False, signed(THROTTLE, nonce="a" * 16), NOW).ok
    safe = {"command": "enter_safe_mode", "id": "s"}
    out = v.verify(TOPIC, "cmd", False, signed(safe, nonce="b" * 16), NOW)
    assert (out.reason, out.field) == (Reason.FORBIDDEN, "command")
    fault_topic = "orbitwin/v1/sat/STARLINK-1008/fault"
    assert v.verify(fault_topic, "fault", False, signed({"fault": "latchup", "args": {"device": 1}}, fault_topic,
                                                       nonce="c" * 16), NOW).ok
    fleet = {**THROTTLE, "select": "*"}
    out = v.verify(FLEET, "cmd", True, signed(fleet, FLEET, nonce="d" * 16), NOW)
    assert out.reason == Reason.FORBIDDEN and "fleet" in out.message
    # a look-alike command name (Cyrillic o) is not the command the key may issue
    look = {"command": "thr\u043ettle", "args": {"factor": 0.5}}
    assert v.verify(TOPIC, "cmd", False, signed(look, nonce="e" * 16), NOW).reason == Reason.FORBIDDEN


def test_unsigned_requests_required_or_taken_unauthenticated() -> None:
    plain = json.dumps(THROTTLE).encode()
    out = verifier().verify(TOPIC, "cmd", False, canonical(THROTTLE), NOW)
    assert (out.ok, out.reason, out.field) == (False, Reason.UNAUTHENTICATED, "auth")
    out = verifier().verify(TOPIC, "cmd", False, plain, NOW)
    assert (out.ok, out.reason) == (False, Reason.UNAUTHENTICATED)
    out = verifier(require=False).verify(TOPIC, "cmd", False, plain, NOW)
    assert (out.ok, out.authenticated, out.body) == (True, False, None)
    # a request that carries auth is verified even where unsigned ones are taken
    bad = signed(THROTTLE, secret=b"x" * 32)
    assert verifier(require=False).verify(TOPIC, "cmd", False, bad, NOW).reason == Reason.UNAUTHENTICATED
    assert RequestVerifier({}, require=False).verify(TOPIC, "cmd", False, signed(THROTTLE), NOW).reason == \
        Reason.UNAUTHENTICATED


def test_the_verified_body_is_what_the_request_parser_takes() -> None:
    out = verifier().verify(TOPIC, "cmd", False, signed(THROTTLE), NOW)
    assert out.body is not None and AUTH_KEY not in out.body
    req = parse_request(out.body, "cmd", fleet=False)
    assert (req.name, req.args, req.request_id) == ("throttle", {"factor": 0.5}, "thr-1")


def test_signing_input_is_domain_topic_and_canonical_body_without_sig() -> None:
    payload = signed(THROTTLE)
    obj = json.loads(payload)
    sig = obj[AUTH_KEY].pop("sig")
    expected = b"orbitwin-auth-v1\n" + TOPIC.encode() + b"\n" + canonical(obj)
    assert signing_input(TOPIC, obj) == expected
    assert hmac.new(SECRET, expected, hashlib.sha256).hexdigest() == sig
    # the signer refuses what it would have to normalise
    with pytest.raises(ValueError, match="NFC"):
        signed({"command": "throttle", "id": "cafe\u0301"})


@pytest.mark.parametrize("auth, field", [
    ({"client": "c", "iat": NOW, "kid": "ops-1", "nonce": "n" * 16}, "auth"),  # no sig
    ({"client": "c", "iat": NOW, "kid": "ops-1", "nonce": "n" * 16, "sig": "0" * 64, "x": 1}, "auth"),
    ({"client": "c", "iat": NOW, "kid": "o" * 65, "nonce": "n" * 16, "sig": "0" * 64}, "auth.kid"),
    ({"client": "c", "iat": NOW, "kid": "ops-1", "nonce": "n" * 65, "sig": "0" * 64}, "auth.nonce"),
    ({"client": "c", "iat": NOW, "kid": "ops-1", "nonce": "n" * 15, "sig": "0" * 64}, "auth.nonce"),
    ({"client": "c", "iat": NOW, "kid": "ops-1", "nonce": "n" * 16, "sig": "0" * 63}, "auth.sig"),
    ({"client": "c", "iat": NOW, "kid": "ops-1", "nonce": "n" * 16, "sig": "A" * 64}, "auth.sig"),
    ({"client": "c" * 129, "iat": NOW, "kid": "ops-1", "nonce": "n" * 16, "sig": "0" * 64}, "auth.client"),
    ({"client": "c", "iat": float(NOW), "kid": "ops-1", "nonce": "n" * 16, "sig": "0" * 64}, "auth.iat"),
    ({"client": "c", "iat": True, "kid": "ops-1", "nonce": "n" * 16, "sig": "0" * 64}, "auth.iat"),
    ("ops-1:sig", "auth"),
])
def test_malformed_authenticators_are_unauthenticated_with_the_field(auth: Any, field: str) -> None:
    payload = canonical({**THROTTLE, "auth": auth})
    out = verifier().verify(TOPIC, "cmd", False, payload, NOW)
    assert (out.ok, out.reason, out.field) == (False, Reason.UNAUTHENTICATED, field)


def test_nonce_cache_expires_and_when_full_raises_the_floor_never_lets_a_replay_through() -> None:
    v = verifier(window_s=30, max_nonces_per_key=3)
    payloads = [signed(THROTTLE, iat=NOW + k, nonce=f"{k:016d}") for k in range(5)]
    for k, p in enumerate(payloads):
        assert v.verify(TOPIC, "cmd", False, p, NOW + k).ok
    assert len(v.nonces) == 3 and v.nonces.evicted == 2
    # the two forgotten nonces are below the floor now: stale, not accepted
    for p in payloads[:2]:
        assert v.verify(TOPIC, "cmd", False, p, NOW + 5).reason == Reason.STALE
    for p in payloads[2:]:
        assert v.verify(TOPIC, "cmd", False, p, NOW + 5).reason == Reason.REPLAYED
    cache = NonceCache(10.0)
    cache.add("k", "a" * 16, 100)
    cache.expire(111.0)
    assert len(cache) == 0


def test_key_file_tables(tmp_path: Path) -> None:
    from twin.runtime.request_keys import load_keyring, load_secret

    (tmp_path / "ops.secret").write_text("s" * 64 + "\n")
    (tmp_path / "keys.toml").write_text('[keys.ops-1]\nsecret_file = "ops.secret"\ncommands = ["*"]\n'
                                        'faults = ["latchup"]\nfleet = true\n'
                                        '[keys.alerts]\nsecret = "' + "a" * 32 + '"\ncommands = ["throttle"]\n')
    keys = load_keyring(tmp_path / "keys.toml")
    assert keys["ops-1"].secret == b"s" * 64 and keys["ops-1"].rights.allows("command", "anything", True)
    assert keys["ops-1"].rights.allows("fault", "latchup", False) and not keys["ops-1"].rights.allows(
        "fault", "seu_burst", False)
    assert keys["alerts"].rights == KeyRights(frozenset({"throttle"}), frozenset(), False)
    assert load_secret(tmp_path / "ops.secret") == b"s" * 64
    assert "s" * 16 not in repr(keys)  # secrets stay out of reprs and logs
    for bad, needle in [({"keys": {"k": {"secret": "short", "commands": ["*"]}}}, "at least 16"),
                        ({"keys": {"k": {"secret": "x" * 32, "commands": ["warp"]}}}, "unknown name 'warp'"),
                        ({"keys": {"k": {"secret": "x" * 32, "secret_file": "f"}}}, "exactly one"),
                        ({"keys": {"bad id": {"secret": "x" * 32}}}, "key id"),
                        ({"keys": {"k": {"secret": "x" * 32, "fleet": "yes"}}}, "fleet"),
                        ({"keys": {"k": {"secret": "x" * 32, "rights": []}}}, "unknown key 'rights'"),
                        ({"key": {}}, "unknown key 'key'")]:
        with pytest.raises(KeyFileError, match=needle):
            keyring_from_dict(bad)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_keyring(tmp_path / "missing.toml")


def test_signer_and_cli_key_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orbitwin.cli.main import build_parser
    from orbitwin.cli.key_options import client_id_and_signer

    (tmp_path / "k.secret").write_text("k" * 40)
    a = build_parser().parse_args(["send", "--sat", "STARLINK-1008", "{}", "--mqtt", "mqtt://x", "--key-id", "ops-1",
                                   "--key-secret-file", str(tmp_path / "k.secret"), "--client-id", "me"])
    client, signer = client_id_and_signer(a, "send")
    assert client == "me" and signer is not None and (signer.kid, signer.client) == ("ops-1", "me")
    body = json.loads(signer(TOPIC, THROTTLE))
    assert body[AUTH_KEY]["client"] == "me" and re.fullmatch(r"[0-9a-f]{32}", body[AUTH_KEY]["nonce"])
    a = build_parser().parse_args(["scenario", "publish", "f.toml", "--mqtt", "mqtt://x", "--key-id", "ops-1"])
    with pytest.raises(ValueError, match="both"):
        client_id_and_signer(a, "scenario")
    monkeypatch.setenv("ORBITWIN_KEY_SECRET_FILE", str(tmp_path / "k.secret"))
    assert client_id_and_signer(a, "scenario")[1] is not None
    run = build_parser().parse_args(["run", "--keys", "k.toml", "--auth-window", "5", "--allow-unsigned"])
    assert (run.keys, run.auth_window, run.allow_unsigned) == ("k.toml", 5.0, True)
    s = Signer("ops-1", SECRET, "c", lambda: NOW, lambda: "z" * 16)
    assert verifier().verify(TOPIC, "cmd", False, s(TOPIC, THROTTLE), NOW).ok


def guide_section() -> str:
    text = GUIDE.read_text(encoding="utf-8")
    return text[text.index("## Signed requests"):]


def test_the_guides_python_snippet_signs_what_the_twin_verifies() -> None:
    (code,) = re.findall(r"^```python\n(.*?)^```", guide_section(), re.S | re.M)
    scope: dict[str, Any] = {}
    exec(compile(code, "docs/mqtt.md", "exec"), scope)  # noqa: S102 - the guide's own snippet
    payload = scope["sign"](TOPIC, THROTTLE, "ops-1", SECRET.decode(), "ops-console")
    out = verifier().verify(TOPIC, "cmd", False, payload, __import__("time").time())
    assert out.ok and out.authenticated and out.body == THROTTLE, out


def test_orbitwin_run_with_keys_and_orbitwin_send_and_scenario_publish(mosquitto: Any, tmp_path: Path) -> None:
    """The CLI end to end on a real broker: a twin started with --keys refuses unsigned requests and
    those beyond a key's rights; orbitwin send and orbitwin scenario publish sign with a key."""
    import subprocess
    import sys

    from mqtt_helpers import Recorder, start_twin, wait_for

    (tmp_path / "ops.secret").write_text("o" * 64 + "\n")
    (tmp_path / "alerts.secret").write_text("a" * 64 + "\n")
    keys = tmp_path / "keys.toml"
    keys.write_text('[keys.ops-1]\nsecret_file = "ops.secret"\ncommands = ["*"]\nfaults = ["*"]\nfleet = true\n'
                    '[keys.alerts]\nsecret_file = "alerts.secret"\ncommands = ["throttle"]\n')

    def cli(*args: str) -> tuple[int, dict[str, Any] | list[dict[str, Any]], str]:
        out = subprocess.run([sys.executable, "-m", "orbitwin.cli", *args, "--mqtt", mosquitto.url, "--wait", "15"],
                             capture_output=True, text=True, timeout=60)
        lines = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
        return out.returncode, lines[0] if len(lines) == 1 else lines, out.stderr

    bad = subprocess.run([sys.executable, "-m", "orbitwin.cli", "run", "--keys", str(tmp_path / "none.toml"),
                          "--no-mqtt"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "cannot read key file" in bad.stderr
    rec = Recorder(mosquitto.host, mosquitto.port, ["orbitwin/v1/state", "orbitwin/v1/audit"])
    twin = start_twin(mosquitto.url, "--count", "5", "--keys", str(keys), state_dir=str(tmp_path))
    try:
        wait_for(lambda: rec.find(lambda t, p: t.endswith("/state") and p.get("state") == "online"), 60,
                 what="the twin's birth")
        ops = ("--key-id", "ops-1", "--key-secret-file", str(tmp_path / "ops.secret"))
        alerts = ("--key-id", "alerts", "--key-secret-file", str(tmp_path / "alerts.secret"))
        rc, reply, _ = cli("send", "--sat", "STARLINK-1008", '{"command":"throttle","args":{"factor":0.5}}')
        assert rc == 1 and (reply["reason"], reply["field"], reply["authenticated"]) == ("unauthenticated", "auth",
                                                                                         False)
        rc, reply, _ = cli("send", "--sat", "STARLINK-1008", '{"command":"throttle","args":{"factor":0.5}}', *ops,
                           "--client-id", "ops-console")
        assert rc == 0 and (reply["status"], reply["authenticated"], reply["kid"]) == ("completed", True, "ops-1")
        rc, reply, _ = cli("send", "--fleet", '{"command":"throttle","args":{"factor":0.5},"select":"*"}', *alerts)
        assert rc == 1 and reply["reason"] == "forbidden"
        scenario = tmp_path / "s.toml"
        scenario.write_text('[[request]]\nsat = "STARLINK-1012"\nfault = "latchup"\nargs = { device = 1 }\n'
                            '[[request]]\nselect = "*"\ncommand = "set_payload_load"\nargs = { load = 0.7 }\n')
        rc, replies, _ = cli("scenario", "publish", str(scenario), *ops)
        assert rc == 0 and [r["status"] for r in replies] == ["accepted"] * 2 and all(r["authenticated"] for r in replies)
        rc, replies, _ = cli("scenario", "publish", str(scenario))
        assert rc == 1 and [r["reason"] for r in replies] == ["unauthenticated"] * 2
        audit = wait_for(lambda: [p for t, p in rec.find(lambda t, p: t.endswith("/audit"))] if len(
            rec.find(lambda t, p: t.endswith("/audit"))) >= 7 else None, 30, what="seven audit records")
        assert [(a["result"], a["reason"], a["kid"]) for a in audit] == [
            ("rejected", "unauthenticated", None), ("accepted", None, "ops-1"), ("rejected", "forbidden", "alerts"),
            ("accepted", None, "ops-1"), ("accepted", None, "ops-1"),
            ("rejected", "unauthenticated", None), ("rejected", "unauthenticated", None)]
        assert audit[1]["client"] == "ops-console" and audit[1]["topic"] == "orbitwin/v1/sat/STARLINK-1008/cmd"
    finally:
        twin.terminate()
        twin.wait(30)
        rec.close()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 1000), st.integers(0, 20), st.integers(-40, 40)),
                min_size=1, max_size=60),
       st.integers(1, 5))
def test_no_payload_is_ever_accepted_twice_whatever_the_order_time_and_cache_size(
        ops: list[tuple[bool, int, int, int]], cap: int) -> None:
    """Model: new requests and replays of earlier ones, the clock moving forward, a tiny nonce cache.
    Each payload is accepted at most once; a fresh one inside the window is accepted unless the full
    cache has raised the floor past its issue time (then stale, never accepted)."""
    v = verifier(window_s=30, max_nonces_per_key=cap)
    now = NOW
    sent: list[bytes] = []
    accepted: set[bytes] = set()
    for new, pick, advance, skew in ops:
        now += advance
        if new or not sent:
            p = signed(THROTTLE, iat=now + skew, nonce=f"{len(sent):016d}")
            sent.append(p)
        else:
            p = sent[pick % len(sent)]
        out = v.verify(TOPIC, "cmd", False, p, now)
        if out.ok:
            assert p not in accepted, "a payload accepted twice"
            accepted.add(p)
        else:
            assert out.reason in (Reason.STALE, Reason.REPLAYED)
        iat = json.loads(p)["auth"]["iat"]
        if new and abs(iat - now) <= 30 and iat > max(v.nonces.floor.values(), default=-1) and p not in accepted:
            raise AssertionError(f"a fresh request was refused: {out}")
