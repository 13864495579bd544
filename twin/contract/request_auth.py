"""Signed, replay-protected requests: the canonical form, the authenticator and its verification (pure: no I/O).

A signed command or fault is the ordinary request JSON object with one more key, ``auth``::

    {"args":{"factor":0.5},"auth":{"client":"ops-console","iat":1796203200,"kid":"ops-1",
     "nonce":"5f0c9a4e1b7d2c3a","sig":"<64 hex digits>"},"command":"throttle","id":"thr-1"}

- ``kid``: the key id (1..64 of ``A-Z a-z 0-9 . _ -``); the twin's key file maps it to a secret and
  to the commands and faults the key may issue.
- ``iat``: issue time, the sender's wall clock in integer Unix seconds. The twin compares it with
  *its own wall clock* (``time.time()``, not the sim clock): more than ``window_s`` (default 30 s)
  before or after it is ``stale``.
- ``nonce``: 16..64 of ``A-Z a-z 0-9 _ -``, fresh for every request (e.g. 16 random bytes in hex);
  a nonce the twin has seen with the same key within the window is ``replayed``.
- ``client``: the sender's claimed MQTT client id (1..128 printable characters). MQTT 5 does not
  tell a subscriber who published a message, so the sender states it and the MAC binds it: the
  audit trail names the client the key holder claimed to be.
- ``sig``: HMAC-SHA256, 64 lowercase hex digits, keyed with the UTF-8 bytes of the key's secret, over::

      b"orbitwin-auth-v1\\n" + topic + b"\\n" + canonical(request with auth.sig removed)

**Canonical JSON** is what ``json.dumps(obj, sort_keys=True, separators=(",", ":"),
ensure_ascii=False, allow_nan=False)`` writes, as UTF-8: object keys sorted by Unicode code point,
no whitespace, strings escaping only ``"``, ``\\`` and control characters (``\\n \\r \\t \\b \\f``,
others ``\\u00XX``), everything else literal UTF-8; integers in decimal, other numbers as the
shortest text that reads back as the same double (``0.5``, ``1e-05``, ``2.0``). Every string, keys
included, must be in Unicode NFC. The payload on the wire must *be* the canonical form of itself
(with ``sig`` in place): a payload with duplicate keys, reordered keys, whitespace, escapes where
none are needed, non-NFC text or numbers written differently (``1.50``, ``1E3``) is rejected
``unauthenticated``, never normalised: the bytes that were signed are the bytes that are parsed.

Checks, in this order (the first that fails is the reason): the authenticator and the payload are
well formed and canonical, the key id is known and the MAC is right (else ``unauthenticated``);
the issue time is within the window (else ``stale``); the nonce is new (else ``replayed``); the key
may issue this command or fault, on a fleet topic only if allowed (else ``forbidden``).
"""

from __future__ import annotations

import hashlib
import hmac
import heapq
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twin.schema.commands import COMMANDS, FAULTS, Reason

AUTH_KEY = "auth"
DOMAIN = b"orbitwin-auth-v1"
AUTH_FIELDS = ("client", "iat", "kid", "nonce", "sig")
MAX_PAYLOAD_BYTES = 64 * 1024  # the request parser's bound (twin.contract.request_parser.MAX_REQUEST_BYTES)
MIN_SECRET_BYTES = 16
DEFAULT_WINDOW_S = 30.0
DEFAULT_MAX_NONCES_PER_KEY = 100_000
ALL = "*"

_KID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_SIG = re.compile(r"[0-9a-f]{64}")
_MAX_IAT = 2**53


class AuthError(ValueError):
    """A request that fails verification: ``reason`` (a :class:`~twin.schema.commands.Reason`), ``field``."""

    def __init__(self, reason: Reason, message: str, field: str | None = None) -> None:
        self.reason = reason
        self.message = message
        self.field = field
        super().__init__(f"{reason.value}: {message}")


class KeyFileError(ValueError):
    """A key file (or its table) that cannot be used; the message names the key and the problem."""


# --- canonical JSON ---------------------------------------------------------------------------
def canonical(obj: Any) -> bytes:
    """The canonical JSON bytes of ``obj`` (see the module docstring); raises ValueError on NaN/inf or
    text that cannot be UTF-8 (lone surrogates)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text that is not valid Unicode (a lone surrogate)") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k[:40]!r}")
        out[k] = v
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _non_nfc(obj: Any, depth: int = 0) -> str | None:
    """The first string (key or value) of ``obj`` that is not NFC, or None."""
    if depth > 64:
        return "<nesting deeper than 64>"
    if isinstance(obj, str):
        return None if unicodedata.is_normalized("NFC", obj) else obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            bad = _non_nfc(k) or _non_nfc(v, depth + 1)
            if bad is not None:
                return bad
    elif isinstance(obj, list):
        for v in obj:
            bad = _non_nfc(v, depth + 1)
            if bad is not None:
                return bad
    return None


def strict_canonical_loads(payload: bytes) -> dict[str, Any]:
    """The JSON object ``payload`` holds, if and only if ``payload`` is its canonical form.

    Raises :class:`AuthError` (``unauthenticated``) for anything else: too long, not UTF-8, not JSON,
    not an object, duplicate keys, NaN/Infinity, non-NFC text, or bytes that differ from the
    canonical form (key order, whitespace, escapes, number spelling).
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise AuthError(Reason.UNAUTHENTICATED, f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}",
                        "payload")
    try:
        text = payload.decode("utf-8")
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise AuthError(Reason.UNAUTHENTICATED, f"payload is not canonical JSON: {str(exc)[:80]}", "payload") from None
    if not isinstance(obj, dict):
        raise AuthError(Reason.UNAUTHENTICATED, "payload must be a JSON object", "payload")
    # ASCII bytes hold only ASCII text once they are canonical (only control characters, quote and
    # backslash are escaped there), and ASCII is NFC: the walk is needed for other payloads only
    bad = None if payload.isascii() else _non_nfc(obj)
    if bad is not None:
        raise AuthError(Reason.UNAUTHENTICATED, f"text {bad[:40]!r} is not in Unicode NFC", "payload")
    try:
        again = canonical(obj)
    except ValueError as exc:
        raise AuthError(Reason.UNAUTHENTICATED, str(exc), "payload") from None
    if again != payload:
        raise AuthError(Reason.UNAUTHENTICATED, "payload is not in canonical form (sorted keys, no whitespace, "
                        "minimal escapes and number spelling)", "payload")
    return obj


def signing_input(topic: str, body: Mapping[str, Any]) -> bytes:
    """What the MAC covers: the domain, the topic and the canonical request with ``auth.sig`` removed."""
    unsigned = dict(body)
    auth = unsigned.get(AUTH_KEY)
    if isinstance(auth, dict):
        unsigned[AUTH_KEY] = {k: v for k, v in auth.items() if k != "sig"}
    return DOMAIN + b"\n" + topic.encode("utf-8") + b"\n" + canonical(unsigned)


def mac_hex(secret: bytes, message: bytes) -> str:
    """HMAC-SHA256 of ``message`` under ``secret``, 64 lowercase hex digits."""
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign(topic: str, request: Mapping[str, Any], kid: str, secret: bytes, *, iat: int, nonce: str,
         client: str) -> bytes:
    """The signed payload for ``request`` on ``topic``: the request plus ``auth``, in canonical form.

    ``iat``: issue time, integer Unix seconds (the sender's wall clock). Raises ValueError for a
    request that cannot be signed as it stands (an ``auth`` key already, non-NFC text, NaN) or an
    authenticator field out of its format: the signer never normalises what it is given.
    """
    if AUTH_KEY in request:
        raise ValueError("the request already has an auth key")
    bad = _non_nfc(dict(request))
    if bad is not None:
        raise ValueError(f"text {bad[:40]!r} is not in Unicode NFC; write it in NFC")
    auth: dict[str, Any] = {"client": client, "iat": iat, "kid": kid, "nonce": nonce}
    _check_auth_fields(auth | {"sig": "0" * 64})
    body: dict[str, Any] = {**request, AUTH_KEY: auth}
    auth["sig"] = mac_hex(secret, signing_input(topic, body))
    return canonical(body)


# --- keys -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyRights:
    """What a key may issue: command and fault names (``"*"``: all), and whether on fleet topics."""

    commands: frozenset[str] = frozenset()
    faults: frozenset[str] = frozenset()
    fleet: bool = False

    def allows(self, kind: str, name: str, fleet: bool) -> bool:
        """May this key issue ``kind`` (``command``/``fault``) ``name`` on a satellite (or fleet) topic?"""
        names = self.commands if kind == "command" else self.faults
        return (ALL in names or name in names) and (self.fleet or not fleet)


@dataclass(frozen=True)
class Key:
    """One request key: its id, its secret (the HMAC key, bytes) and its rights."""

    kid: str
    secret: bytes = field(repr=False)
    rights: KeyRights


def _names(value: Any, table: Mapping[str, Any], where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise KeyFileError(f"{where} must be a list of names (or [\"*\"])")
    unknown = sorted(set(value) - set(table) - {ALL})
    if unknown:
        raise KeyFileError(f"{where}: unknown name {unknown[0]!r} (known: {', '.join(sorted(table))})")
    return frozenset(value)


def keyring_from_dict(data: Mapping[str, Any], read_secret: Callable[[str], str] | None = None,
                      source: str = "<keys>") -> dict[str, Key]:
    """Keys from a parsed key file: ``{"keys": {kid: {"secret" | "secret_file", "commands", "faults",
    "fleet"}}}``. ``read_secret(path)`` reads a ``secret_file`` (the caller resolves and does the I/O).

    A secret is text; its UTF-8 bytes (a trailing newline of a secret file removed) are the HMAC key
    and must be at least 16 bytes. Raises :class:`KeyFileError` naming the key and the problem.
    """
    unknown = set(data) - {"keys"}
    if unknown:
        raise KeyFileError(f"{source}: unknown key {sorted(unknown)[0]!r} (a key file holds [keys.ID] tables)")
    table = data.get("keys")
    if not isinstance(table, dict) or not table:
        raise KeyFileError(f"{source}: no [keys.ID] table")
    out: dict[str, Key] = {}
    for kid, entry in table.items():
        where = f"{source}: keys.{kid}"
        if not isinstance(kid, str) or not _KID.fullmatch(kid):
            raise KeyFileError(f"{where}: a key id is 1..64 of A-Z a-z 0-9 . _ -")
        if not isinstance(entry, dict):
            raise KeyFileError(f"{where} must be a table")
        extra = set(entry) - {"secret", "secret_file", "commands", "faults", "fleet", "description"}
        if extra:
            raise KeyFileError(f"{where}: unknown key {sorted(extra)[0]!r}")
        if ("secret" in entry) == ("secret_file" in entry):
            raise KeyFileError(f"{where}: needs exactly one of secret or secret_file")
        if "secret" in entry:
            secret = entry["secret"]
        else:
            if not isinstance(entry["secret_file"], str) or read_secret is None:
                raise KeyFileError(f"{where}: secret_file must be a path")
            secret = read_secret(entry["secret_file"])
        if not isinstance(secret, str):
            raise KeyFileError(f"{where}: the secret must be text")
        raw = secret.removesuffix("\n").encode("utf-8")
        if len(raw) < MIN_SECRET_BYTES:
            raise KeyFileError(f"{where}: the secret is {len(raw)} bytes; at least {MIN_SECRET_BYTES} "
                               f"(e.g. openssl rand -hex 32)")
        fleet = entry.get("fleet", False)
        if not isinstance(fleet, bool):
            raise KeyFileError(f"{where}: fleet must be true or false")
        rights = KeyRights(_names(entry.get("commands", []), COMMANDS, f"{where}.commands"),
                           _names(entry.get("faults", []), FAULTS, f"{where}.faults"), fleet)
        out[kid] = Key(kid, raw, rights)
    return out


# --- replay protection ---------------------------------------------------------------------------
class NonceCache:
    """Nonces seen per key, each until its issue time has left the window (then a replay is stale anyway).

    Bounded: at most ``max_per_key`` nonces per key. When a key is full the nonce with the oldest
    issue time is forgotten and the key's floor rises past that time: a request issued at or before
    the floor is refused as stale from then on, so forgetting never lets a replay through.
    """

    def __init__(self, window_s: float, max_per_key: int = DEFAULT_MAX_NONCES_PER_KEY) -> None:
        if not window_s > 0 or max_per_key < 1:
            raise ValueError("window_s must be > 0 and max_per_key >= 1")
        self.window_s = window_s
        self.max_per_key = max_per_key
        self._seen: dict[str, dict[str, int]] = {}
        self._order: dict[str, list[tuple[int, str]]] = {}
        self.floor: dict[str, int] = {}  # per key: requests issued at or before this are stale
        self.evicted = 0

    def __len__(self) -> int:
        return sum(len(s) for s in self._seen.values())

    def expire(self, now_s: float) -> None:
        """Forget nonces whose issue time is older than the window."""
        for kid, heap in self._order.items():
            seen = self._seen[kid]
            while heap and heap[0][0] < now_s - self.window_s:
                _, nonce = heapq.heappop(heap)
                seen.pop(nonce, None)

    def below_floor(self, kid: str, iat: int) -> bool:
        return iat <= self.floor.get(kid, -1)

    def seen(self, kid: str, nonce: str) -> bool:
        return nonce in self._seen.get(kid, {})

    def add(self, kid: str, nonce: str, iat: int) -> None:
        seen = self._seen.setdefault(kid, {})
        heap = self._order.setdefault(kid, [])
        while len(seen) >= self.max_per_key:
            old_iat, old = heapq.heappop(heap)
            seen.pop(old, None)
            self.floor[kid] = max(self.floor.get(kid, -1), old_iat)
            self.evicted += 1
        seen[nonce] = iat
        heapq.heappush(heap, (iat, nonce))


# --- verification ----------------------------------------------------------------------------------
def _printable(v: Any, limit: int) -> str | None:
    """A claimed value as safe text for replies and the audit trail (attacker-controlled: bounded)."""
    if not isinstance(v, str) or not v:
        return None
    return "".join(c if c.isprintable() else "?" for c in v[:limit])


def _check_auth_fields(auth: Mapping[str, Any]) -> None:
    keys = set(auth)
    if keys != set(AUTH_FIELDS):
        missing, extra = sorted(set(AUTH_FIELDS) - keys), sorted(keys - set(AUTH_FIELDS))
        what = f"missing {missing[0]!r}" if missing else f"unknown key {extra[0]!r}"
        raise AuthError(Reason.UNAUTHENTICATED, f"auth: {what} (auth holds {', '.join(AUTH_FIELDS)})", "auth")
    kid, nonce, sig, client, iat = auth["kid"], auth["nonce"], auth["sig"], auth["client"], auth["iat"]
    if not isinstance(kid, str) or not _KID.fullmatch(kid):
        raise AuthError(Reason.UNAUTHENTICATED, "auth.kid must be 1..64 of A-Z a-z 0-9 . _ -", "auth.kid")
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise AuthError(Reason.UNAUTHENTICATED, "auth.nonce must be 16..64 of A-Z a-z 0-9 _ -", "auth.nonce")
    if not isinstance(sig, str) or not _SIG.fullmatch(sig):
        raise AuthError(Reason.UNAUTHENTICATED, "auth.sig must be 64 lowercase hex digits", "auth.sig")
    if not isinstance(client, str) or not 1 <= len(client) <= 128 or not client.isprintable():
        raise AuthError(Reason.UNAUTHENTICATED, "auth.client must be 1..128 printable characters", "auth.client")
    if isinstance(iat, bool) or not isinstance(iat, int) or not 0 <= iat < _MAX_IAT:
        raise AuthError(Reason.UNAUTHENTICATED, "auth.iat must be integer Unix seconds", "auth.iat")


@dataclass(frozen=True)
class Verdict:
    """The outcome of :meth:`RequestVerifier.verify`.

    ``ok`` with ``authenticated``: a verified signed request; ``body`` is the request without
    ``auth``. ``ok`` without ``authenticated``: an unsigned request this twin takes (``body`` None:
    parse the payload as usual). Not ``ok``: rejected with ``reason``/``message``/``field``.
    ``kid`` and ``client`` are what the request claimed (bounded, printable), for the audit trail.
    """

    ok: bool
    authenticated: bool
    reason: Reason | None = None
    message: str = ""
    field: str | None = None
    kid: str | None = None
    client: str | None = None
    body: dict[str, Any] | None = None


class RequestVerifier:
    """Verifies requests against a keyring; holds the nonces seen (no I/O: the caller passes the time).

    ``require``: refuse unsigned requests (``unauthenticated``); otherwise they pass unauthenticated.
    A request that carries ``auth`` is always verified. ``window_s``: how far (s) an issue time may
    be from the twin's wall clock, either way.
    """

    def __init__(self, keys: Mapping[str, Key], *, require: bool = True, window_s: float = DEFAULT_WINDOW_S,
                 max_nonces_per_key: int = DEFAULT_MAX_NONCES_PER_KEY) -> None:
        self.keys = dict(keys)
        self.require = require
        self.window_s = float(window_s)
        self.nonces = NonceCache(self.window_s, max_nonces_per_key)

    def verify(self, topic: str, leaf: str, fleet: bool, payload: bytes, now_s: float) -> Verdict:
        """Check one request on ``topic`` (leaf ``cmd`` or ``fault``) received at wall time ``now_s``
        (Unix seconds); a request that passes has its nonce remembered."""
        claimed = claimed_object(payload) if len(payload) <= MAX_PAYLOAD_BYTES else None
        unsigned = claimed is None or AUTH_KEY not in claimed
        if unsigned and not self.require:
            return Verdict(True, False)  # taken as before (the request parser rejects what is malformed)
        kid = client = None
        try:
            if claimed is not None and AUTH_KEY not in claimed:
                raise AuthError(Reason.UNAUTHENTICATED, "this twin takes only signed requests (auth missing)", "auth")
            body = strict_canonical_loads(payload)
            auth = body.get(AUTH_KEY)
            if auth is None:
                raise AuthError(Reason.UNAUTHENTICATED, "this twin takes only signed requests (auth missing)", "auth")
            if not isinstance(auth, dict):
                raise AuthError(Reason.UNAUTHENTICATED, "auth must be an object", "auth")
            kid, client = _printable(auth.get("kid"), 64), _printable(auth.get("client"), 128)
            _check_auth_fields(auth)
            key = self.keys.get(auth["kid"])
            if key is None:
                raise AuthError(Reason.UNAUTHENTICATED, f"unknown key id {kid!r}", "auth.kid")
            if not hmac.compare_digest(mac_hex(key.secret, signing_input(topic, body)), auth["sig"]):
                raise AuthError(Reason.UNAUTHENTICATED, "the signature does not match the topic and request",
                                "auth.sig")
            iat: int = auth["iat"]
            if abs(iat - now_s) > self.window_s:
                when = "before" if iat < now_s else "after"
                raise AuthError(Reason.STALE, f"issued {abs(now_s - iat):.0f} s {when} the twin's wall clock time; "
                                f"at most {self.window_s:g} s either way", "auth.iat")
            self.nonces.expire(now_s)
            if self.nonces.below_floor(key.kid, iat):
                raise AuthError(Reason.STALE, "issued before the oldest issue time this twin still remembers for "
                                "this key", "auth.iat")
            if self.nonces.seen(key.kid, auth["nonce"]):
                raise AuthError(Reason.REPLAYED, "this nonce was already used with this key", "auth.nonce")
            self.nonces.add(key.kid, auth["nonce"], iat)
            kind = "command" if leaf == "cmd" else "fault"
            name = body.get(kind)
            if not isinstance(name, str) or not key.rights.allows(kind, name, fleet):
                what = f"{kind} {name!r}" if isinstance(name, str) else f"this {kind}"
                where = " on a fleet topic" if fleet and isinstance(name, str) and key.rights.allows(
                    kind, name, False) else ""
                raise AuthError(Reason.FORBIDDEN, f"key {key.kid!r} may not issue {what}{where}", kind)
        except AuthError as exc:
            return Verdict(False, False, exc.reason, exc.message, exc.field, kid, client)
        request = {k: v for k, v in body.items() if k != AUTH_KEY}
        return Verdict(True, True, kid=key.kid, client=auth["client"], body=request)


def claimed_object(payload: bytes) -> dict[str, Any] | None:
    """The payload as a JSON object, leniently (for routing the reply of a rejected request), or None."""
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def reasons() -> Iterable[Reason]:
    """The reasons verification can give."""
    return (Reason.UNAUTHENTICATED, Reason.STALE, Reason.REPLAYED, Reason.FORBIDDEN)


@dataclass(frozen=True)
class Signer:
    """Signs requests as one key and client: ``signer(topic, request)`` -> the signed payload.

    ``clock()`` gives the wall time in Unix seconds and ``nonce()`` a fresh nonce; the caller
    supplies both (see :func:`twin.runtime.request_keys.make_signer`), so this stays pure.
    """

    kid: str
    secret: bytes = field(repr=False)
    client: str
    clock: Callable[[], float]
    nonce: Callable[[], str]

    def __call__(self, topic: str, request: Mapping[str, Any]) -> bytes:
        return sign(topic, request, self.kid, self.secret, iat=int(self.clock()), nonce=self.nonce(),
                    client=self.client)
