#!/bin/sh
# Prepare the broker's private files from the environment and the mounts, then run it.
#   - the password file: one user per role of the ACL (`user NAME` lines of docker/mosquitto/acl, generated
#     from twin/contract/roles.py), password from $MQTT_<NAME>_PASSWORD (e.g. MQTT_INFLUX_BRIDGE_PASSWORD),
#     hashed by `mosquitto_passwd -U` (no password ever on a command line);
#   - the TLS key and certificate (scripts/gen-env.sh) copied where only the broker's user reads them;
#   - the health check's client options ($MOSQUITTO_HEALTH_USER, default observer), so that the
#     check passes no password on its command line either.
# Paths (defaults as in docker-compose.yml and mosquitto.conf):
#   MOSQUITTO_ACL (/mosquitto/config/acl)  MOSQUITTO_AUTH_DIR (/mosquitto/auth)  ORBITWIN_TLS_DIR (/orbitwin/tls)
#   MOSQUITTO_HEALTH_DIR (/mosquitto/health)  MOSQUITTO_CONF (/mosquitto/config/mosquitto.conf)
#   MOSQUITTO_PORT (8883: the TLS listener the health check uses)
set -eu
acl="${MOSQUITTO_ACL:-/mosquitto/config/acl}"
auth="${MOSQUITTO_AUTH_DIR:-/mosquitto/auth}"
tls="${ORBITWIN_TLS_DIR:-/orbitwin/tls}"
health="${MOSQUITTO_HEALTH_DIR:-/mosquitto/health}"
conf="${MOSQUITTO_CONF:-/mosquitto/config/mosquitto.conf}"
umask 077
fail() { echo "entrypoint: $*" >&2; exit 1; }

users="$(awk '$1 == "user" {print $2}' "$acl" 2>/dev/null)" || true
[ -n "$users" ] || fail "no user in the ACL $acl"
for f in ca.pem server.pem server.key; do
    [ -r "$tls/$f" ] || fail "$tls/$f missing: run scripts/gen-env.sh (it makes the CA and the broker certificate)"
done
mkdir -p "$auth" "$health"
plain="$auth/passwd.new"
: > "$plain"
for user in $users; do
    case "$user" in *[!a-z0-9-]*) fail "role name $user: only a-z, 0-9 and - are allowed" ;; esac
    var="MQTT_$(echo "$user" | tr 'a-z-' 'A-Z_')_PASSWORD"
    eval "password=\${$var:-}"
    # shellcheck disable=SC2154 # set by eval
    [ -n "$password" ] || fail "$var must be set (scripts/gen-env.sh)"
    case "$password" in *:*|*"
"*) fail "$var: no ':' or newline in passwords" ;; esac
    printf '%s:%s\n' "$user" "$password" >> "$plain"
done
mosquitto_passwd -U "$plain" >/dev/null
mv -f "$plain" "$auth/passwd"
cp "$tls/server.pem" "$auth/server.pem"
cp "$tls/server.key" "$auth/server.key"
if id mosquitto >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    chown -R mosquitto:mosquitto "$auth"
fi
chmod 0700 "$auth"
chmod 0600 "$auth/passwd" "$auth/server.key"
chmod 0644 "$auth/server.pem"

health_user="${MOSQUITTO_HEALTH_USER:-observer}"
var="MQTT_$(echo "$health_user" | tr 'a-z-' 'A-Z_')_PASSWORD"
eval "password=\${$var:-}"
printf -- '-h localhost\n-p %s\n--cafile %s\n-u %s\n-P %s\n' "${MOSQUITTO_PORT:-8883}" "$tls/ca.pem" \
    "$health_user" "$password" > "$health/mosquitto_sub"
chmod 0700 "$health"
chmod 0600 "$health/mosquitto_sub"
unset password
exec mosquitto -c "$conf"
