#!/usr/bin/env bash
# Install what the test suite needs (Debian packages + Python packages) and run it.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || need_apt+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
command -v influxd >/dev/null 2>&1 || need_apt+=(influxdb)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
# the Debian packages install services; the tests start their own servers on free ports
# (the tests never use them; stopped only in CI or when asked, never a user's services otherwise)
if [ "${CI:-}" = "true" ] || [ "${ORBITWIN_STOP_SERVICES:-}" = "1" ]; then
  command -v systemctl >/dev/null 2>&1 && systemctl stop mosquitto influxdb >/dev/null 2>&1 || true
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
export ORBITWIN_REQUIRE_SERVERS=1
if [ $# -gt 0 ]; then
  exec python3 -m pytest -q "$@"
fi
# The whole suite: everything but the timing tests on every core (pytest-xdist; each worker has its
# own servers on free ports), then the tests that measure wall-clock behaviour (publish lag, live
# silence, speed) alone, so that the suite's own load does not decide them.
workers="${ORBITWIN_TEST_WORKERS:-$(python3 -c 'import os; print(max(2, len(os.sched_getaffinity(0))))')}"
rc=0
python3 -m pytest -q -n "$workers" -m "not timing" || rc=$?
python3 -m pytest -q -m timing || rc=$?
exit "$rc"
