#!/bin/sh
# The container's entrypoint: `run` (the default) starts the server, writing a
# config first if the volume has none (from SERVER_NAME, and DATABASE_URL for
# PostgreSQL); `init ...` only writes one; anything else is a `homeserver`
# subcommand (e.g. `register-user -u alice --admin`). WORKERS_CONFIG names a
# YAML file appended to the config written (the workers of several processes,
# docker/workers.yaml); a worker is `run --worker NAME` on the same config.
set -e
CONFIG="${HOMESERVER_CONFIG:-/data/homeserver.yaml}"

write_config() {
    if [ -z "${SERVER_NAME:-}" ]; then
        echo "homeserver: no config at $CONFIG; set SERVER_NAME (and DATABASE_URL for" \
             "PostgreSQL) to have one written, or run the 'init' command" >&2
        exit 1
    fi
    set -- --config "$CONFIG" --server-name "$SERVER_NAME" --bind-address 0.0.0.0
    if [ -n "${DATABASE_URL:-}" ]; then
        set -- "$@" --database postgres --database-url "$DATABASE_URL"
    fi
    if [ -n "${PUBLIC_BASEURL:-}" ]; then
        set -- "$@" --public-baseurl "$PUBLIC_BASEURL"
    fi
    if [ "${X_FORWARDED:-}" = "true" ]; then
        set -- "$@" --x-forwarded
    fi
    homeserver init "$@"
    if [ -n "${WORKERS_CONFIG:-}" ]; then
        cat "$WORKERS_CONFIG" >> "$CONFIG"
    fi
}

case "${1:-run}" in
    run)
        [ $# -gt 0 ] && shift
        [ -f "$CONFIG" ] || write_config
        exec homeserver run --config "$CONFIG" "$@"
        ;;
    init)
        shift
        exec homeserver init --config "$CONFIG" --bind-address 0.0.0.0 "$@"
        ;;
    register-user)
        shift
        exec homeserver register-user --config "$CONFIG" "$@"
        ;;
    *)
        exec homeserver "$@"
        ;;
esac
