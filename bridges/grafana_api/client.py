"""Open Grafana's HTTP API with ``grafana-client``; credentials from the environment; one-line errors.

Credentials, never on the command line: ``$GRAFANA_TOKEN`` (a service-account token, sent as
``Authorization: Bearer``) or ``$GRAFANA_USER`` with ``$GRAFANA_PASSWORD`` (HTTP basic auth).
Every failure of a call becomes a :class:`GrafanaApiError` (a ``ValueError``: the CLI prints
it on one line and exits 2) naming the Grafana, what was being done and why: unreachable, timed
out, 401 (credentials), 403 (role), 4xx/5xx with Grafana's own message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import niquests.exceptions
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaServerError, GrafanaTimeoutError

ENV_TOKEN = "GRAFANA_TOKEN"
ENV_USER = "GRAFANA_USER"
ENV_PASSWORD = "GRAFANA_PASSWORD"
DEFAULT_TIMEOUT_S = 10.0

Credential = str | tuple[str, str]


class GrafanaApiError(ValueError):
    """A Grafana HTTP API call failed; the message is one line. ``status``: the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def credential_from_env(env: Mapping[str, str] | None = None) -> Credential:
    """``$GRAFANA_TOKEN``, else ``($GRAFANA_USER, $GRAFANA_PASSWORD)``; ValueError naming what is missing."""
    env = os.environ if env is None else env
    token, user, password = (env.get(k) or None for k in (ENV_TOKEN, ENV_USER, ENV_PASSWORD))
    if token:
        return token
    if user and password:
        return user, password
    if user:
        raise ValueError(f"Grafana user {user!r} has no password: set ${ENV_PASSWORD}")
    if password:
        raise ValueError(f"${ENV_PASSWORD} is set without ${ENV_USER}")
    raise ValueError(f"no Grafana credentials: set ${ENV_TOKEN} (a service-account token) "
                     f"or ${ENV_USER} and ${ENV_PASSWORD}")


def _reason(exc: BaseException) -> str:
    """The root cause of a connection failure (``Connection refused``, a DNS error), not the retry wrapper."""
    text = re.sub(r"\s+", " ", str(exc)).strip()
    m = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text) or re.search(r"Failed to resolve '[^']*'", text)
    return (m[1] if m and m.groups() else m[0] if m else text)[:200]


def _message(exc: GrafanaException) -> str:
    resp = exc.response
    msg = resp.get("message") if isinstance(resp, dict) else resp
    return re.sub(r"\s+", " ", str(msg or exc.message or "")).strip()[:200]


class Grafana:
    """One Grafana: its API (``api``, a :class:`grafana_client.GrafanaApi`) and :meth:`call` with one-line errors."""

    def __init__(self, url: str, credential: Credential, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--grafana {url!r}: an http:// or https:// URL with a host is required")
        if parts.username or parts.password:
            raise ValueError(f"--grafana: put credentials in ${ENV_TOKEN} or ${ENV_USER}/${ENV_PASSWORD}, "
                             "not in the URL (ps shows it to every user)")
        if timeout_s <= 0:
            raise ValueError(f"Grafana timeout must be > 0 s, not {timeout_s}")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.basic = isinstance(credential, tuple)
        self.api = GrafanaApi.from_url(self.url, credential=credential, timeout=timeout_s)

    def call(self, what: str, fn: Callable[..., Any], *args: Any, missing_ok: bool = False, **kw: Any) -> Any:
        """``fn(*args, **kw)``; with ``missing_ok`` a 404 returns None; any other failure raises GrafanaApiError."""
        try:
            return fn(*args, **kw)
        except GrafanaTimeoutError:
            raise GrafanaApiError(f"Grafana at {self.url} did not answer {what} within {self.timeout_s:g} s") from None
        except GrafanaServerError as exc:
            raise GrafanaApiError(f"Grafana at {self.url} failed {what} ({exc.status_code}): {_message(exc)}",
                                  exc.status_code) from None
        except GrafanaClientError as exc:
            if exc.status_code == 404 and missing_ok:
                return None
            raise self._client_error(exc, what) from None
        except GrafanaException as exc:  # no HTTP answer
            raise GrafanaApiError(f"cannot reach Grafana at {self.url}: {_message(exc)}") from None
        except (niquests.exceptions.RequestException, OSError) as exc:
            raise GrafanaApiError(f"cannot reach Grafana at {self.url}: {_reason(exc)}") from None

    def _client_error(self, exc: GrafanaClientError, what: str) -> GrafanaApiError:
        code = exc.status_code
        if code == 401:
            which = f"${ENV_USER}/${ENV_PASSWORD}" if self.basic else f"${ENV_TOKEN}"
            return GrafanaApiError(f"Grafana at {self.url} refused the credentials (401 Unauthorized: "
                                   f"{_message(exc)}): check {which}", 401)
        if code == 403:
            return GrafanaApiError(f"Grafana at {self.url} forbids {what} (403 Forbidden: {_message(exc)}): the "
                                   "user or service account needs the Admin role (datasources, notification "
                                   "policies) or Editor (folders, dashboards, alert rules)", 403)
        return GrafanaApiError(f"Grafana at {self.url} refused {what} ({code}): {_message(exc)}", code)

    def version(self) -> str:
        """Grafana's version from ``GET /api/health`` (no credentials needed)."""
        health = self.call("the health check", self.api.client.GET, "/health")
        version = health.get("version") if isinstance(health, dict) else None
        if not isinstance(version, str) or not version:
            raise GrafanaApiError(f"{self.url} answered /api/health without a version: is it Grafana?")
        return version

    def require_version(self, minimum: tuple[int, int], why: str) -> str:
        """The version; GrafanaApiError if it is older than ``minimum``."""
        version = self.version()
        m = re.match(r"(\d+)\.(\d+)", version)
        if m is None:
            raise GrafanaApiError(f"Grafana at {self.url} reports version {version!r}, not MAJOR.MINOR...")
        if (int(m[1]), int(m[2])) < minimum:
            raise GrafanaApiError(f"Grafana {version} at {self.url} is too old: {why} needs Grafana "
                                  f"{minimum[0]}.{minimum[1]} or later")
        return version
