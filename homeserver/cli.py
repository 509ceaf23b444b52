"""The ``homeserver`` command: init, run, register-user.

Every failure an operator can cause (a bad config, an unreachable database, a
taken user name) ends with one line on stderr and a non-zero exit, never a
traceback.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import logging.config
import os
import sys
from typing import Any

import yaml

from homeserver.config import Config, ConfigError, load_config

logger = logging.getLogger(__name__)


def _fail(msg: str) -> "SystemExit":
    print(f"homeserver: {msg}", file=sys.stderr)
    return SystemExit(1)


# --- init ---------------------------------------------------------------------

def _database_section(kind: str, url: str | None, data_dir: str) -> dict[str, Any]:
    if kind == "sqlite":
        return {"name": "sqlite3", "args": {"database": os.path.join(data_dir, "homeserver.db")}}
    if not url:
        return {"name": "psycopg2", "args": {"database": "homeserver", "user": "postgres",
                                             "host": "127.0.0.1", "cp_min": 1, "cp_max": 10}}
    import psycopg2.extensions

    try:
        parsed = psycopg2.extensions.parse_dsn(url)
    except psycopg2.ProgrammingError:
        raise _fail(f"--database-url: not a PostgreSQL connection string: {url!r}") from None
    args: dict[str, Any] = {}
    for key, value in parsed.items():
        if key == "dbname":
            args["database"] = value
        elif key == "port":
            args["port"] = int(value)
        elif key in ("user", "password", "host", "sslmode"):
            args[key] = value
        else:
            raise _fail(f"--database-url: unsupported connection parameter {key!r}")
    args.setdefault("cp_min", 1)
    args.setdefault("cp_max", 10)
    return {"name": "psycopg2", "args": args}


def cmd_init(ns: argparse.Namespace) -> None:
    from signedjson.key import generate_signing_key, write_signing_keys

    config_path = os.path.abspath(ns.config)
    if os.path.exists(config_path):
        raise _fail(f"{ns.config} already exists; not overwriting it")
    data_dir = os.path.dirname(config_path)
    os.makedirs(data_dir, exist_ok=True)
    key_name = os.path.splitext(os.path.basename(config_path))[0] + ".signing.key"
    key_path = os.path.join(data_dir, key_name)
    if not os.path.exists(key_path):
        key = generate_signing_key("a_" + os.urandom(3).hex())
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            write_signing_keys(f, [key])
    port = 8008
    config = {
        "server_name": ns.server_name,
        "public_baseurl": ns.public_baseurl or (
            f"http://127.0.0.1:{port}/" if ns.server_name in ("localhost", "127.0.0.1")
            else f"https://{ns.server_name}/"),
        "listeners": [{"port": port, "bind_addresses": ["127.0.0.1"], "type": "http",
                       "x_forwarded": False, "resources": [{"names": ["client", "federation"]}]}],
        "database": _database_section(ns.database, ns.database_url, data_dir),
        "signing_key_path": key_name,
        "registration_shared_secret": os.urandom(24).hex(),
        "enable_registration": False,
        "report_stats": False,
    }
    fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("# homeserver configuration; key names follow Synapse's where they\n"
                "# mean the same.\n")
        yaml.safe_dump(config, f, sort_keys=False)
    print(f"wrote {ns.config} for server name {ns.server_name}")


# --- run ------------------------------------------------------------------------

def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as e:
        raise _fail(f"config error: {e}") from None


def setup_logging(config: Config) -> None:
    if config.log_config:
        path = os.path.join(config.config_dir, config.log_config)
        try:
            with open(path, encoding="utf-8") as f:
                logging.config.dictConfig(yaml.safe_load(f))
            return
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise _fail(f"log_config {path}: {e}") from None
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_run(ns: argparse.Namespace) -> None:
    from twisted.internet import defer
    from twisted.internet import reactor as _reactor
    from twisted.internet.error import CannotListenError

    from homeserver.server import HomeServer
    from homeserver.storage.database import DatabaseError

    reactor: Any = _reactor
    config = _load(ns.config)
    setup_logging(config)
    try:
        hs = HomeServer(config, reactor)
    except OSError as e:
        raise _fail(f"cannot read the signing key: {e}") from None
    failure: list[str] = []

    async def start() -> None:
        try:
            await hs.setup()
            hs.listen()
        except DatabaseError as e:
            failure.append(str(e))
        except CannotListenError as e:
            failure.append(f"cannot listen on {e.interface}:{e.port}: {e.socketError}")
        except Exception as e:  # database unreachable and the like
            failure.append(f"cannot start: {type(e).__name__}: {str(e).strip().splitlines()[0]}")
        if failure:
            reactor.stop()
            return
        logger.info("homeserver %s started", config.server_name)

    reactor.callWhenRunning(lambda: defer.ensureDeferred(start()))
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.ensureDeferred(hs.stop()))
    reactor.run()
    if failure:
        raise _fail(failure[0])


# --- register-user ------------------------------------------------------------------

def cmd_register_user(ns: argparse.Namespace) -> None:
    from twisted.internet import defer
    from twisted.internet import reactor as _reactor

    from homeserver.accounts.sessions import create_user
    from homeserver.http.errors import MatrixError
    from homeserver.server import HomeServer

    reactor: Any = _reactor
    config = _load(ns.config)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    password = ns.password
    if password is None:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Confirm password: "):
            raise _fail("passwords do not match")
    if not password:
        raise _fail("the password may not be empty")
    outcome: list[tuple[bool, str]] = []

    async def main() -> None:
        hs = HomeServer(config, reactor)
        try:
            await hs.setup()
            user_id = await create_user(hs, ns.user, password, admin=ns.admin)
            outcome.append((True, f"created {'admin ' if ns.admin else ''}user {user_id}"))
        except MatrixError as e:
            outcome.append((False, e.msg))
        except Exception as e:
            outcome.append((False, f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"))
        finally:
            await hs.stop()
            reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(main()))
    reactor.run()
    ok, line = outcome[0] if outcome else (False, "interrupted")
    if not ok:
        raise _fail(line)
    print(line)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="homeserver", description="A Matrix homeserver")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="write a new config file and signing key")
    p.add_argument("--server-name", required=True)
    p.add_argument("--config", default="homeserver.yaml")
    p.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--database-url", help="PostgreSQL connection string (with --database postgres)")
    p.add_argument("--public-baseurl")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("run", help="run the server")
    p.add_argument("--config", default="homeserver.yaml")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("register-user", help="create a user (or admin) from the shell")
    p.add_argument("--config", default="homeserver.yaml")
    p.add_argument("--user", "-u", required=True, help="the localpart, e.g. alice")
    p.add_argument("--password", "-p", help="asked for when not given")
    p.add_argument("--admin", action="store_true", help="make the user a server admin")
    p.set_defaults(func=cmd_register_user)
    return parser


def main(argv: list[str] | None = None) -> None:
    ns = build_parser().parse_args(argv)
    ns.func(ns)


if __name__ == "__main__":  # pragma: no cover
    main()
