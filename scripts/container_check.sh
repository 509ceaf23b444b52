#!/usr/bin/env bash
# Build the image and check it as an operator would: a fresh volume, a config
# written from SERVER_NAME, the health check, an admin made with register-user,
# a password login, and the same account after a restart.
#
#   scripts/container_check.sh                 # python:3.11-slim-bookworm base
#   PYTHON_IMAGE=my-base EXTRA_CA_CERT="$(cat proxy-ca.crt)" scripts/container_check.sh
#
# Needs a running Docker daemon. Exit 0 when every step worked.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=homeserver:check
NAME=homeserver-check-$$
VOLUME=homeserver-check-$$
PORT=${PORT:-18008}
args=()
[ -n "${PYTHON_IMAGE:-}" ] && args+=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE")
[ -n "${EXTRA_CA_CERT:-}" ] && args+=(--build-arg "EXTRA_CA_CERT=$EXTRA_CA_CERT")

cleanup() { docker rm -f "$NAME" >/dev/null 2>&1 || true; docker volume rm "$VOLUME" >/dev/null 2>&1 || true; }
trap cleanup EXIT

step() { echo "== $*"; }
step "build"
docker build -q "${args[@]}" -t "$IMAGE" . >/dev/null
docker image inspect "$IMAGE" --format 'image size: {{.Size}} bytes'

step "run on a fresh volume"
docker run -d --name "$NAME" -v "$VOLUME:/data" -e SERVER_NAME=chat.example.org \
    -p "127.0.0.1:$PORT:8008" "$IMAGE" >/dev/null
for _ in $(seq 60); do
    [ "$(docker inspect --format '{{.State.Health.Status}}' "$NAME")" = healthy ] && break
    sleep 1
done
test "$(docker inspect --format '{{.State.Health.Status}}' "$NAME")" = healthy
test "$(docker exec "$NAME" id -u)" != 0
test "$(curl -s "http://127.0.0.1:$PORT/health")" = OK

login() {
    curl -sf -XPOST "http://127.0.0.1:$PORT/_matrix/client/v3/login" -d \
        '{"type":"m.login.password","identifier":{"type":"m.id.user","user":"admin"},"password":"correct horse"}' \
        | grep -q '"user_id":"@admin:chat.example.org"'
}
step "register-user and log in"
docker exec "$NAME" homeserver-entrypoint register-user -u admin -p "correct horse" --admin
login

step "restart keeps the account"
docker restart "$NAME" >/dev/null
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 1; done
login
echo "container check: all steps passed"
