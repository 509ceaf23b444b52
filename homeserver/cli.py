"""The ``homeserver`` command: init, run, register-user, import-synapse.

Every failure an operator can cause (a bad config, an unreachable database, a
taken user name) ends with one line on stderr and a non-zero exit, never a
traceback.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from typing import Any

import yaml

from homeserver.config import Config, ConfigError, build_config, load_config, select_worker
from homeserver.logcompat import install_record_factory, load_log_config

logger = logging.getLogger(__name__)


def _fail(msg: str) -> "SystemExit":
    print(f"homeserver: {msg}", file=sys.stderr)
    return SystemExit(1)


# --- init ---------------------------------------------------------------------

def _database_section(kind: str, url: str | None) -> dict[str, Any]:
    if kind == "sqlite":
        if url:
            raise _fail("--database-url is for --database postgres")
        # relative to the config file, so the data directory can move
        return {"name": "sqlite3", "args": {"database": "homeserver.db"}}
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


# Server names that can only ever be a trial on this machine.
LOCAL_TRIAL_NAMES = ("localhost", "127.0.0.1")


def _registration_section(local_trial: bool) -> str:
    """The registration keys, with the comment that explains the choice."""
    secret = os.urandom(24).hex()
    if local_trial:
        return (
            "\n# Open registration, without email or token: this config is for a local\n"
            "# trial (server name localhost) and the listener binds 127.0.0.1 only,\n"
            "# so nobody but this machine can reach it. Turn both off, or set\n"
            "# registration_requires_token: true, before serving anyone else.\n"
            "enable_registration: true\n"
            "enable_registration_without_verification: true\n"
            "# For `homeserver register-user` and the shared-secret admin API.\n"
            f"registration_shared_secret: {secret}\n")
    return (
        "\n# Registration is closed: create accounts with `homeserver register-user`,\n"
        "# or set registration_requires_token: true and hand out tokens.\n"
        "enable_registration: false\n"
        "# For `homeserver register-user` and the shared-secret admin API.\n"
        f"registration_shared_secret: {secret}\n")


def cmd_init(ns: argparse.Namespace) -> None:
    from signedjson.key import generate_signing_key, write_signing_keys

    config_path = os.path.abspath(ns.config)
    if os.path.exists(config_path):
        raise _fail(f"{ns.config} already exists; not overwriting it")
    data_dir = os.path.dirname(config_path)
    key_name = os.path.splitext(os.path.basename(config_path))[0] + ".signing.key"
    port = 8008
    bind = ns.bind_address
    loopback = bind in ("127.0.0.1", "::1")
    # open registration only where nobody else can reach the server
    local_trial = ns.server_name in LOCAL_TRIAL_NAMES and loopback
    config = {
        "server_name": ns.server_name,
        "public_baseurl": ns.public_baseurl or (
            f"http://127.0.0.1:{port}/" if local_trial else f"https://{ns.server_name}/"),
        "listeners": [{"port": port, "bind_addresses": [bind], "type": "http",
                       "x_forwarded": ns.x_forwarded,
                       "resources": [{"names": ["client", "federation"]}]}],
        "database": _database_section(ns.database, ns.database_url),
        "signing_key_path": key_name,
        "report_stats": False,
        # the web client at / (docs/web-client.md; built by `make webclient`)
        "web_client": {"enabled": True},
    }
    text = ("# homeserver configuration; key names follow Synapse's where they\n"
            "# mean the same. See config/homeserver.yaml for every key.\n"
            + yaml.safe_dump(config, sort_keys=False) + _registration_section(local_trial))
    # Whatever we write must load: a bad --server-name fails here, not at `run`.
    try:
        build_config(yaml.safe_load(text), data_dir)
    except ConfigError as e:
        raise _fail(str(e)) from None
    os.makedirs(data_dir, exist_ok=True)
    key_path = os.path.join(data_dir, key_name)
    if not os.path.exists(key_path):
        key = generate_signing_key("a_" + os.urandom(3).hex())
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            write_signing_keys(f, [key])
    fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
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
                load_log_config(yaml.safe_load(f))
        except (OSError, ValueError, TypeError, AttributeError, ImportError,
                yaml.YAMLError) as e:
            raise _fail(f"log_config {path}: {e}") from None
    else:
        install_record_factory()
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s [%(request)s] %(message)s")
    for warning in config.warnings:
        logger.warning("%s", warning)


def _check_signing_key(config: Config) -> None:
    """Fail in one line on a missing or unreadable signing key file."""
    from signedjson.key import read_signing_keys

    if not config.signing_key_path:
        return
    path = os.path.join(config.config_dir, config.signing_key_path)
    try:
        with open(path, encoding="ascii") as f:
            keys = read_signing_keys(f)
    except OSError as e:
        raise _fail(f"cannot read the signing key {path}: {e.strerror}") from None
    except ValueError:  # includes undecodable bytes
        keys = []
    if not keys:
        raise _fail(f"{path}: not a signing key file (expected 'ed25519 <version> <key>')")


def cmd_run(ns: argparse.Namespace) -> None:
    from homeserver import lazy_tls

    lazy_tls.install()  # before the reactor: pyOpenSSL loads with the first TLS use
    from twisted.internet import defer
    from twisted.internet import reactor as _reactor
    from twisted.internet.error import CannotListenError

    from homeserver.server import HomeServer
    from homeserver.storage.database import DatabaseError

    reactor: Any = _reactor
    config = _load(ns.config)
    if ns.worker is not None:
        try:
            config = select_worker(config, ns.worker)
        except ConfigError as e:
            raise _fail(f"config error: {e}") from None
    setup_logging(config)
    from homeserver.sentry import SentryUnavailable, setup_sentry
    try:
        if setup_sentry(config):
            logger.info("reporting errors to Sentry")
    except SentryUnavailable as e:
        raise _fail(f"config error: {e}") from None
    _check_signing_key(config)
    hs = HomeServer(config, reactor)
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
        logger.info("homeserver %s started (%s %s)", config.server_name,
                    config.worker.app, config.worker.name)
        # start-up's objects frozen, full collections on a timer (gc_tuning.py)
        from homeserver import gc_tuning
        gc_tuning.tune(reactor)

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

    from homeserver.errors import MatrixError
    from homeserver.server import HomeServer

    reactor: Any = _reactor
    config = _load(ns.config)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # before the reactor runs: a HomeServer that cannot load its key would
    # fail where nothing stops the reactor
    _check_signing_key(config)
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
            user_id = await hs.sessions.create_user(ns.user, password, admin=ns.admin)
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


# --- import-synapse -------------------------------------------------------------

def cmd_import_synapse(ns: argparse.Namespace) -> None:
    from homeserver.storage.database import DatabaseError
    from homeserver.synapse_import.common import Progress, SynapseImportError
    from homeserver.synapse_import.importer import SynapseImporter

    config = _load(ns.config)
    logging.basicConfig(level=logging.INFO if ns.no_progress else logging.WARNING,
                        stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    show = not ns.no_progress and sys.stderr.isatty()
    try:
        with Progress(enabled=show) as progress:
            importer = SynapseImporter(ns.synapse_config, config, progress=progress,
                                       events_per_transaction=ns.events_per_transaction)
            try:
                importer.open(dry_run=ns.dry_run, synapse_stopped=ns.synapse_stopped)
                if ns.dry_run:
                    counts = importer.dry_run()
                else:
                    report = importer.run()
                    problems = importer.verify() if not ns.no_check else []
            finally:
                importer.close()
    except SynapseImportError as e:
        raise _fail(str(e)) from None
    except DatabaseError as e:
        raise _fail(str(e)) from None
    if ns.dry_run:
        print("dry run: nothing written (our database not even opened); Synapse holds")
        for table, n in counts.items():
            print(f"  {table:<32} {n}")
        return
    print(f"imported {config.server_name} from {ns.synapse_config}")
    for stage, n in report.counts.items():
        print(f"  {stage:<24} {n}")
    if report.events_per_second:
        print(f"  events per second        {report.events_per_second:.0f}")
    for line in report.skipped:
        print(f"  not imported: {line}")
    if problems:
        for line in problems:
            print(f"  check: {line}", file=sys.stderr)
        raise _fail(f"the check after the import found {len(problems)} difference(s)")
    if not ns.no_check:
        print("  check: counts and sampled events match")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="homeserver", description="A Matrix homeserver")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="write a new config file and signing key")
    p.add_argument("--server-name", required=True)
    p.add_argument("--config", default="homeserver.yaml")
    p.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--database-url", help="PostgreSQL connection string (with --database postgres)")
    p.add_argument("--public-baseurl")
    p.add_argument("--bind-address", default="127.0.0.1",
                   help="the listener's address (default 127.0.0.1; 0.0.0.0 in a container)")
    p.add_argument("--x-forwarded", action="store_true",
                   help="behind a reverse proxy: trust its X-Forwarded-For")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("run", help="run the server")
    p.add_argument("--config", default="homeserver.yaml")
    p.add_argument("--worker", metavar="NAME",
                   help="run the worker NAME of the config's workers map (docs/scale-out.md)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("register-user", help="create a user (or admin) from the shell")
    p.add_argument("--config", default="homeserver.yaml")
    p.add_argument("--user", "-u", required=True, help="the localpart, e.g. alice")
    p.add_argument("--password", "-p", help="asked for when not given")
    p.add_argument("--admin", action="store_true", help="make the user a server admin")
    p.set_defaults(func=cmd_register_user)

    p = sub.add_parser("import-synapse",
                       help="copy a Synapse server (database, media, signing key) into ours")
    p.add_argument("--synapse-config", "--from", dest="synapse_config", required=True,
                   help="Synapse's homeserver.yaml (its database section is read)")
    p.add_argument("--config", default="homeserver.yaml",
                   help="our config; its database must be new and empty")
    p.add_argument("--dry-run", action="store_true", help="count what would be imported")
    p.add_argument("--no-progress", action="store_true",
                   help="log lines instead of progress bars")
    p.add_argument("--synapse-stopped", action="store_true",
                   help="skip the check that nothing answers on Synapse's listener ports")
    p.add_argument("--events-per-transaction", type=int, default=2000, metavar="N",
                   help="a room's events are committed N at a time (default 2000)")
    p.add_argument("--no-check", action="store_true",
                   help="skip the comparison of counts and sampled events afterwards")
    p.set_defaults(func=cmd_import_synapse)
    return parser


def main(argv: list[str] | None = None) -> None:
    ns = build_parser().parse_args(argv)
    ns.func(ns)


if __name__ == "__main__":  # pragma: no cover
    main()
