#!/bin/sh
# Build mosquitto's password file from the environment, then run the broker.
#   MQTT_{TWIN,BRIDGE,GRAFANA_BRIDGE}_{USER,PASSWORD}  the three clients (all required)
#   MOSQUITTO_PASSWD_FILE  where to write it (default /mosquitto/auth/passwd, as in mosquitto.conf)
#   MOSQUITTO_CONF         the config (default /mosquitto/config/mosquitto.conf)
set -eu
passwd_file="${MOSQUITTO_PASSWD_FILE:-/mosquitto/auth/passwd}"
conf="${MOSQUITTO_CONF:-/mosquitto/config/mosquitto.conf}"
umask 077
mkdir -p "$(dirname "$passwd_file")"
: > "$passwd_file"
for who in TWIN BRIDGE GRAFANA_BRIDGE; do
    eval "user=\${MQTT_${who}_USER:-}; password=\${MQTT_${who}_PASSWORD:-}"
    if [ -z "$user" ] || [ -z "$password" ]; then
        echo "entrypoint: MQTT_${who}_USER and MQTT_${who}_PASSWORD must be set (scripts/gen-env.sh)" >&2
        exit 1
    fi
    mosquitto_passwd -b "$passwd_file" "$user" "$password"
done
if id mosquitto >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    chown -R mosquitto:mosquitto "$(dirname "$passwd_file")"
fi
chmod 0700 "$(dirname "$passwd_file")"
chmod 0600 "$passwd_file"
exec mosquitto -c "$conf"
