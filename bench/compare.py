"""Compare our server with Synapse: every scenario on each, one table of figures.

    python -m bench.compare [--scenarios send,fanout,initial_sync,join,footprint,federation]
        [--size full|small|tiny] [--servers ours,synapse] [--engine postgres|sqlite]
        [--pg-dsn DSN] [--synapse-venv PATH] [--synapse-version 1.163.2]
        [--json PATH] [--time-limit SECONDS]

(``bench/compare`` is the same as a shell command.) What it does:

1. With Synapse among ``--servers``, makes sure its virtualenv can import
   ``synapse`` and ``psycopg2`` at the wanted version; if not, creates it
   (``python -m venv``) and ``pip install``s ``matrix-synapse==<version>
   psycopg2-binary`` into it.
2. For each scenario, for each server in turn (ours first, then Synapse): a
   FRESH server on a fresh database (``bench.server.LocalServer`` on
   ``--engine``, ``bench.synapse_server.SynapseServer`` on PostgreSQL; both
   with every rate limiter lifted, bcrypt at 4 rounds, presence on), the
   scenario's ``run_scenario(target, SIZES[size], ours=...)`` under
   ``--time-limit``, and the server stopped again (SIGTERM, database
   dropped, directory removed) whatever happened: error, time limit or ^C.
   A failed scenario is recorded with its error and the run goes on.
3. Prints a table - scenario, figure, ours, Synapse, ratio - where the ratio
   is put so that above 1 means ours is better (Synapse's figure over ours
   for a figure where lower is better, ours over Synapse's where higher is),
   and writes everything as JSON (``--json``, default
   ``bench/results/compare-<date>.json``) and the table as Markdown next to
   it (``.md``), headed by the date, the machine, CPython, our commit, the
   Synapse and PostgreSQL versions and PostgreSQL's durability settings.
   Both files are rewritten after every run, so an interrupted comparison
   keeps what it measured.

Scenarios follow one contract (``bench/README.md``): a module
``bench/<name>.py`` with ``NAME``, ``SIZES`` and ``async run_scenario``
returning ``{"figures": {key: {value, unit, better, label}}, "complete": ...}``.
A scenario may also define ``server_options(kind)``: keyword arguments for
the server each run starts (``federation`` gives the target a TLS federation
listener). They are imported by name when their turn comes, so a missing or broken
module is reported in the table, not a crash. ``send`` has its adapter here
(``bench/send.py`` predates the contract): users in one room, then the same
spread over 20 rooms, on the same server one after the other.

The whole sequence runs in one reactor run (``bench.client.run``: the
reactor runs once per process); starting and stopping a server are blocking
subprocess calls made on the reactor thread between scenarios, when it has
nothing else to do. The exit status is 0 only if every scenario completed on
every server.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.client import run
from bench.send import Plan, TimeLimitExceeded, is_complete, run_benchmark, with_time_limit
from bench.server import (
    DEFAULT_PG_DSN,
    ENGINES,
    REPO_ROOT,
    LocalServer,
    ProcessServer,
    Target,
    interrupt_on_signals,
    peak_rss_kib,
    source_revision,
)

SCHEMA_VERSION = 1
SCENARIOS = ("send", "fanout", "initial_sync", "join", "footprint", "federation", "media",
             "appservice", "sliding_sync", "sliding_fanout")
SIZE_NAMES = ("full", "small", "tiny")
SERVERS = ("ours", "synapse")
DEFAULT_SYNAPSE_VERSION = "1.163.2"
DEFAULT_SYNAPSE_VENV = os.environ.get("SYNAPSE_VENV", "/tmp/synapse-venv")
DEFAULT_TIME_LIMIT_S = 1800.0
RESULTS_DIR = REPO_ROOT / "bench" / "results"
NOT_AVAILABLE = "n/a"
FAILED = "failed"

RunScenario = Callable[..., Coroutine[Any, Any, dict[str, Any]]]


# --- the send scenario's adapter --------------------------------------------------------

SEND_SIZES: dict[str, dict[str, Any]] = {
    "full": {"users": 10, "messages": 2000, "concurrency": 20, "rooms": [1, 20]},
    "small": {"users": 10, "messages": 500, "concurrency": 20, "rooms": [1, 20]},
    "tiny": {"users": 2, "messages": 10, "concurrency": 2, "rooms": [1, 20]},
}
SEND_MAX_SECONDS = 300.0
SEND_REQUEST_TIMEOUT_S = 30.0


def _finite(value: Any) -> float | None:
    """A figure's value: a finite number, or None (an empty run's percentile is NaN)."""
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def figure(value: Any, unit: str, better: str, label: str) -> dict[str, Any]:
    return {"value": _finite(value), "unit": unit, "better": better, "label": label}


async def run_send_scenario(target: Target, params: dict[str, Any], *,
                            ours: bool) -> dict[str, Any]:
    """U users send M messages, C in flight, to one room, then to ``rooms[1]`` rooms.

    Each room count is a ``bench.send.run_benchmark`` run of its own (its own
    users and rooms) on the same server, one after the other. ``ours`` makes
    no difference: the scenario is plain client-server API.
    """
    result: dict[str, Any] = {"scenario": "send", "params": params, "figures": {},
                              "runs": {}, "complete": False}
    complete = True
    for rooms in params["rooms"]:
        plan = Plan(params["users"], params["messages"], params["concurrency"], rooms,
                    params.get("max_seconds", SEND_MAX_SECONDS), SEND_REQUEST_TIMEOUT_S)
        measured = await run_benchmark(target, plan)
        tag = "1room" if rooms == 1 else f"{rooms}rooms"
        where = "1 room" if rooms == 1 else f"{rooms} rooms"
        result["runs"][tag] = measured
        send = measured["send"]
        result["figures"].update({
            f"send_{tag}_msgs_per_s": figure(send["messages_per_s"], "msg/s", "higher",
                                             f"{where}: messages/s"),
            f"send_{tag}_p50_ms": figure(send["latency_ms"]["p50"], "ms", "lower",
                                         f"{where}: send latency p50"),
            f"send_{tag}_p99_ms": figure(send["latency_ms"]["p99"], "ms", "lower",
                                         f"{where}: send latency p99"),
        })
        complete = complete and is_complete(measured, plan)
    result["complete"] = complete
    return result


# --- scenarios by name ------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    name: str
    sizes: dict[str, dict[str, Any]]
    run: RunScenario
    # keyword arguments for the server a run starts ("ours" or "synapse" -> kwargs),
    # e.g. a TLS federation listener; None: the plain client-API server
    server_options: Callable[[str], dict[str, Any]] | None = None


def load_scenario(name: str) -> Scenario:
    """The scenario ``name``: the send adapter, or module ``bench.<name>`` imported now.

    Raises ImportError (the module is missing or fails to import) or
    ValueError (it does not follow the contract).
    """
    if name == "send":
        return Scenario("send", SEND_SIZES, run_send_scenario)
    module = importlib.import_module(f"bench.{name}")
    sizes = getattr(module, "SIZES", None)
    run_scenario = getattr(module, "run_scenario", None)
    if not isinstance(sizes, dict) or not callable(run_scenario):
        raise ValueError(f"bench.{name} lacks SIZES or run_scenario (see the scenario contract)")
    server_options = getattr(module, "server_options", None)
    return Scenario(str(getattr(module, "NAME", name)), sizes, run_scenario,
                    server_options if callable(server_options) else None)


# --- Synapse's virtualenv ---------------------------------------------------------------

def synapse_python(venv: str) -> str:
    return os.path.join(venv, "bin", "python")


def installed_synapse(python: str) -> dict[str, str] | None:
    """Synapse's and CPython's versions in that interpreter; None if it cannot run Synapse."""
    if not os.path.exists(python):
        return None
    probe = ("import json, platform, psycopg2, synapse; print(json.dumps("
             "{'synapse': synapse.__version__, 'python': platform.python_version()}))")
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    found: dict[str, str] = json.loads(done.stdout)
    # a virtualenv inside a git checkout gets the checkout's branch appended
    # ("1.163.2 (b=main,7616b77)"): the release is the first word
    found["synapse"] = found["synapse"].split()[0] if found["synapse"] else ""
    return found


def ensure_synapse(venv: str, version: str) -> dict[str, str]:
    """A virtualenv at ``venv`` with matrix-synapse ``version`` and psycopg2; its versions."""
    python = synapse_python(venv)
    found = installed_synapse(python)
    if found is not None and found["synapse"] == version:
        return found
    if not os.path.exists(python):
        print(f"bench.compare: creating a virtualenv for Synapse at {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    elif found is not None:
        print(f"bench.compare: {venv} has Synapse {found['synapse']}, not {version}", flush=True)
    print(f"bench.compare: pip install matrix-synapse=={version} psycopg2-binary into {venv} "
          "(a few minutes)", flush=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", f"matrix-synapse=={version}",
                    "psycopg2-binary"], check=True)
    found = installed_synapse(python)
    if found is None or found["synapse"] != version:
        raise RuntimeError(f"{venv} still cannot import Synapse {version} after pip install")
    return found


# --- the machine ------------------------------------------------------------------------

def _proc_field(path: str, name: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        return None
    return None


def machine_info() -> dict[str, Any]:
    ram = _proc_field("/proc/meminfo", "MemTotal")  # "8039652 kB"
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _proc_field("/proc/cpuinfo", "model name"),
        "ram_kib": int(ram.split()[0]) if ram else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1m_before": os.getloadavg()[0],
    }


# --- the table --------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """One line of the table: a figure of a scenario, as each server measured it."""

    scenario: str
    key: str
    label: str
    unit: str
    better: str
    ours: str  # the cells, already formatted
    synapse: str
    ratio: str
    ours_value: float | None = None
    synapse_value: float | None = None


def format_number(value: float) -> str:
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1 or size == 0:
        return f"{value:.2f}"
    return f"{value:.2g}"


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return NOT_AVAILABLE
    if unit == "fraction":
        return f"{value:.3f}"
    return f"{format_number(value)} {unit}"


def ratio(ours: float | None, synapse: float | None, better: str) -> float | None:
    """How many times better ours is: above 1 ours is better, below 1 Synapse is."""
    if ours is None or synapse is None or ours <= 0 or synapse <= 0:
        return None
    return synapse / ours if better == "lower" else ours / synapse


def format_ratio(ours: float | None, synapse: float | None, better: str) -> str:
    r = ratio(ours, synapse, better)
    if r is None:
        return NOT_AVAILABLE
    text = f"{r:.1f}" if r >= 1 else f"{r:.2g}"
    return f"{text}x better" if r > 1 and text != "1.0" else f"{text}x"


def _cell(run: dict[str, Any] | None, key: str, unit: str) -> tuple[str, float | None]:
    """A server's cell for one figure: its value, "failed", or n/a (not run, no such figure)."""
    if run is None:
        return NOT_AVAILABLE, None
    found = (run.get("figures") or {}).get(key)
    value = _finite(found.get("value")) if isinstance(found, dict) else None
    if value is None:
        return (FAILED if run.get("error") and found is None else NOT_AVAILABLE), None
    text = format_value(value, unit)
    if not run.get("complete"):
        text += " *"  # measured, but the run was not complete: see the JSON
    return text, value


def table_rows(scenario: str, runs: dict[str, dict[str, Any]]) -> list[Row]:
    """The rows of one scenario from each server's run record (``figures``, ``error``,
    ``complete``); figures in ours's order, then any only Synapse has."""
    ours, synapse = runs.get("ours"), runs.get("synapse")
    figures: dict[str, dict[str, Any]] = {}
    for run_record in (ours, synapse):
        for key, meta in ((run_record or {}).get("figures") or {}).items():
            if isinstance(meta, dict):
                figures.setdefault(key, meta)
    if not figures:
        def status(r: dict[str, Any] | None) -> str:
            return FAILED if r is not None and r.get("error") else NOT_AVAILABLE
        return [Row(scenario, "", "(no figures)", "", "", status(ours), status(synapse),
                    NOT_AVAILABLE)]
    rows = []
    for key, meta in figures.items():
        unit, better = str(meta.get("unit", "")), str(meta.get("better", "lower"))
        ours_text, ours_value = _cell(ours, key, unit)
        synapse_text, synapse_value = _cell(synapse, key, unit)
        rows.append(Row(scenario, key, str(meta.get("label", key)), unit, better, ours_text,
                        synapse_text, format_ratio(ours_value, synapse_value, better),
                        ours_value, synapse_value))
    return rows


HEADINGS = ("scenario", "figure", "ours", "Synapse", "ratio")


def _cells(row: Row) -> tuple[str, str, str, str, str]:
    return (row.scenario, row.label, row.ours, row.synapse, row.ratio)


def render_text(rows: list[Row]) -> str:
    """The table for a terminal: aligned columns, numbers to the right."""
    lines = [HEADINGS, *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADINGS))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                             for i, (cell, w) in enumerate(zip(line, widths, strict=True)))
                   .rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def render_markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADINGS) + " |", "| --- | --- | ---: | ---: | ---: |"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |" for r in rows]
    return "\n".join(lines)


RATIO_NOTE = ("ratio: how many times better ours is (Synapse's figure over ours where lower "
              "is better, ours over Synapse's where higher is); below 1, Synapse is better. "
              "`*`: the run was not complete (see the JSON); failed: the scenario failed "
              "on that server; n/a: not measured (not run, or the server cannot: Synapse "
              "has no WebSocket).")


def all_rows(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for name, scenario in results["scenarios"].items():
        if scenario.get("error"):  # never ran: the module is missing or broken
            rows.append(Row(name, "", "(scenario not loaded)", "", "", NOT_AVAILABLE,
                            NOT_AVAILABLE, NOT_AVAILABLE))
        else:
            rows += table_rows(name, scenario.get("runs", {}))
    return rows


def errors_of(results: dict[str, Any]) -> list[str]:
    found = []
    for name, scenario in results["scenarios"].items():
        if scenario.get("error"):
            found.append(f"{name}: {scenario['error']}")
        for server, run_record in scenario.get("runs", {}).items():
            if run_record.get("error"):
                found.append(f"{name} on {server}: {run_record['error']}")
            elif not run_record.get("complete"):
                found.append(f"{name} on {server}: not complete")
    return found


def render_markdown(results: dict[str, Any]) -> str:
    """The Markdown report: what was run where, then the table."""
    machine, params = results["machine"], results["params"]
    started = datetime.datetime.fromisoformat(results["started_at"])
    ram = f", {machine['ram_kib'] / 1024 / 1024:.1f} GiB RAM" if machine.get("ram_kib") else ""
    pg = results.get("postgres") or {}
    if pg:
        pg_line = (f"PostgreSQL {pg.get('server_version', '?')} on loopback: "
                   f"fsync {pg.get('fsync', '?')}, "
                   f"synchronous_commit {pg.get('synchronous_commit', '?')}")
    else:
        pg_line = "PostgreSQL: not used"
    synapse = results.get("synapse") or {}
    synapse_line = (f"Synapse {synapse.get('synapse', '?')} (CPython {synapse.get('python', '?')}, "
                    f"from PyPI into {synapse.get('venv')}), on PostgreSQL"
                    if "synapse" in params["servers"] else "Synapse: not run")
    lines = [
        f"# ours against Synapse ({params['size']} size)",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine['cpus']} cores, {machine.get('cpu_model') or 'unknown CPU'}{ram}; "
        f"1-minute load before the run {machine['loadavg_1m_before']:.2f}",
        f"- ours: commit {results['revision']}, CPython {machine['python']}, "
        f"on {params['engine']}",
        f"- {synapse_line}",
        f"- {pg_line}",
        "- both servers: fresh server and database per scenario, rate limits lifted, "
        "bcrypt 4 rounds, presence on; the load generator on the same machine",
        f"- command: `{results['command']}`",
        "",
        render_markdown_table(all_rows(results)),
        "",
        RATIO_NOTE,
    ]
    errors = errors_of(results)
    if errors:
        lines += ["", "Not complete:", ""] + [f"- {e}" for e in errors]
    return "\n".join(lines) + "\n"


def write_outputs(results: dict[str, Any], json_path: Path) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    results["table"] = [row.__dict__ for row in all_rows(results)]
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    with open(json_path.with_suffix(".md"), "w", encoding="utf-8") as f:
        f.write(render_markdown(results))


# --- the run ----------------------------------------------------------------------------

@dataclass
class Settings:
    scenarios: list[str]
    size: str
    servers: list[str]
    engine: str
    pg_dsn: str
    synapse_python: str
    time_limit_s: float
    json_path: Path
    client_filter: str = "plain"
    # --set: parameter overrides, for every scenario that has the parameter
    overrides: dict[str, Any] = field(default_factory=dict)


def make_server(kind: str, settings: Settings, options: dict[str, Any] | None = None) -> Any:
    """A LocalServer or SynapseServer, not yet started (both have start/stop/log_tail).

    ``options``: the scenario's extra keyword arguments (``server_options``).
    """
    if kind == "ours":
        return LocalServer(settings.engine, pg_dsn=settings.pg_dsn, **(options or {}))
    from bench.synapse_server import SynapseServer

    return SynapseServer(pg_dsn=settings.pg_dsn, python=settings.synapse_python,
                         **(options or {}))


async def run_on(kind: str, scenario: Scenario, params: dict[str, Any], settings: Settings,
                 active: list[ProcessServer], record: dict[str, Any]) -> None:
    """One scenario on one fresh server, stopped afterwards whatever happens.

    Fills in ``record``, which is already in the results: if the reactor is
    stopped under us (^C), what was known so far is still written out.
    """
    options = scenario.server_options(kind) if scenario.server_options else None
    server = make_server(kind, settings, options)
    record.update({"server": None, "loadavg_1m_before": os.getloadavg()[0],
                   "complete": False, "error": None, "figures": {}})
    active.append(server)
    started = time.monotonic()
    try:
        target: Target = server.start()  # blocks the reactor, which has nothing else to do
        record["server"] = {
            "name": target.name, "pid": target.pid, "idle_rss_kib": server.idle_rss_kib,
            "startup_s": round(server.startup_s or 0, 2),
            "version": getattr(server, "version", None),
            "postgres": server.database_settings or None,
        }
        print(f"  {target.name}: started in {server.startup_s:.1f}s, idle RSS "
              f"{(server.idle_rss_kib or 0) / 1024:.0f} MiB", flush=True)
        result = await with_time_limit(
            settings.time_limit_s, lambda: scenario.run(target, params, ours=kind == "ours"))
        record["result"] = result
        record["figures"] = result.get("figures") or {}
        record["complete"] = bool(result.get("complete"))
        record["error"] = result.get("error")  # a scenario may report its own failure
        if target.pid is not None:
            record["server"]["peak_rss_kib"] = peak_rss_kib(target.pid)
    except TimeLimitExceeded:
        record["error"] = f"stopped at the time limit ({settings.time_limit_s:g}s)"
    except Exception as e:
        record["error"] = repr(e)
        if server.proc is not None:
            record["log_tail"] = server.log_tail()
    finally:
        try:
            record["exit_status"] = server.stop()
        except Exception as e:  # a database that would not drop: say so, go on
            record["stop_error"] = repr(e)
        active.remove(server)
        record["elapsed_s"] = round(time.monotonic() - started, 1)


async def run_all(settings: Settings, results: dict[str, Any],
                  active: list[ProcessServer]) -> None:
    for name in settings.scenarios:
        entry: dict[str, Any] = {"runs": {}}
        results["scenarios"][name] = entry
        try:
            scenario = load_scenario(name)
            params = dict(scenario.sizes[settings.size])
            if "client_filter" in params:  # the scenarios whose receivers sync
                params["client_filter"] = settings.client_filter
            params.update({k: v for k, v in settings.overrides.items() if k in params})
        except Exception as e:  # missing, broken, or no such size: reported, not fatal
            entry["error"] = f"cannot load the scenario: {e!r}"
            print(f"{name}: {entry['error']}", file=sys.stderr, flush=True)
            write_outputs(results, settings.json_path)
            continue
        entry["params"] = params
        for kind in settings.servers:
            print(f"{name} on {kind}, size {settings.size}: {params}", flush=True)
            run_record: dict[str, Any] = {}
            entry["runs"][kind] = run_record
            await run_on(kind, scenario, params, settings, active, run_record)
            pg_settings = (run_record.get("server") or {}).get("postgres")
            if pg_settings and not results.get("postgres"):
                results["postgres"] = pg_settings  # the same PostgreSQL for every run
            if run_record["error"]:
                print(f"  {name} on {kind}: {run_record['error']}", file=sys.stderr, flush=True)
            for key, meta in run_record["figures"].items():
                print(f"  {key}: {format_value(_finite(meta.get('value')), meta.get('unit', ''))}",
                      flush=True)
            print(f"  {'complete' if run_record['complete'] else 'NOT complete'} in "
                  f"{run_record['elapsed_s']}s", flush=True)
            write_outputs(results, settings.json_path)


def _list_of(choices: tuple[str, ...] | None, name: str) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"no {name} given")
        for item in items:
            if choices is not None and item not in choices:
                raise argparse.ArgumentTypeError(f"{item!r} is not one of {', '.join(choices)}")
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", item):
                raise argparse.ArgumentTypeError(f"{item!r} is not a scenario module name")
        return list(dict.fromkeys(items))  # once each, in the order given
    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare",
        description="Every scenario on our server and on Synapse; a table of both")
    parser.add_argument("--scenarios", type=_list_of(None, "scenarios"),
                        default=list(SCENARIOS), help="comma-separated, in this order "
                        f"(default {','.join(SCENARIOS)}); bench/<name>.py each")
    parser.add_argument("--size", choices=SIZE_NAMES, default="full",
                        help="the scenarios' sizes: full (the issue's), small, tiny (smoke)")
    parser.add_argument("--servers", type=_list_of(SERVERS, "servers"), default=list(SERVERS),
                        help="ours, synapse, or both (default); each scenario runs on each")
    parser.add_argument("--engine", choices=ENGINES, default="postgres",
                        help="our server's database (Synapse always runs on PostgreSQL)")
    parser.add_argument("--pg-dsn", default=DEFAULT_PG_DSN,
                        help="where to create (and drop) the bench databases")
    parser.add_argument("--synapse-venv", default=DEFAULT_SYNAPSE_VENV,
                        help="Synapse's virtualenv, created if it cannot import Synapse "
                        "(default $SYNAPSE_VENV or /tmp/synapse-venv)")
    parser.add_argument("--synapse-version", default=DEFAULT_SYNAPSE_VERSION)
    parser.add_argument("--json", metavar="PATH", type=Path,
                        help="write the results here, and the table next to it as .md "
                        "(default bench/results/compare-<date>.json)")
    parser.add_argument("--client-filter", choices=("plain", "element"), default="plain",
                        help="the /sync filter of the fanout and initial_sync receivers: "
                        "plain (presence off, 50 events) or element (what matrix-js-sdk / "
                        "Element Web send: lazy-loaded members, per-thread unread counts)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override a parameter of the size in every scenario that has "
                        "it, e.g. receivers=[300]")
    parser.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT_S,
                        help="cancel one scenario on one server after this long (s)")
    ns = parser.parse_args(argv)
    if ns.time_limit <= 0:
        parser.error("--time-limit must be positive")
    ns.overrides = {}
    for item in ns.set:
        key, _, value = item.partition("=")
        try:
            ns.overrides[key] = json.loads(value)
        except ValueError:
            parser.error(f"--set {item!r}: the value is not JSON")
    return ns


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    # Synapse runs from another working directory: a relative path would break
    ns.synapse_venv = os.path.abspath(ns.synapse_venv)
    now = datetime.datetime.now(datetime.UTC)
    json_path: Path = ns.json or RESULTS_DIR / f"compare-{now:%Y-%m-%d-%H%M}.json"
    synapse: dict[str, Any] | None = None
    if "synapse" in ns.servers:
        try:
            synapse = {**ensure_synapse(ns.synapse_venv, ns.synapse_version),
                       "venv": ns.synapse_venv}
        except (OSError, subprocess.CalledProcessError, RuntimeError) as e:
            print(f"bench.compare: no Synapse to compare with: {e}", file=sys.stderr)
            return 2
    settings = Settings(ns.scenarios, ns.size, ns.servers, ns.engine, ns.pg_dsn,
                        synapse_python(ns.synapse_venv), ns.time_limit, json_path,
                        ns.client_filter, ns.overrides)
    results: dict[str, Any] = {
        "benchmark": "compare",
        "schema": SCHEMA_VERSION,
        "started_at": now.isoformat(timespec="seconds"),
        "command": " ".join(["bench/compare", *(argv if argv is not None else sys.argv[1:])]),
        "params": {"scenarios": ns.scenarios, "size": ns.size, "servers": ns.servers,
                   "engine": ns.engine, "time_limit_s": ns.time_limit,
                   "client_filter": ns.client_filter, "overrides": ns.overrides,
                   "synapse_version": ns.synapse_version},
        "machine": machine_info(),
        "revision": source_revision(),
        "synapse": synapse,
        "postgres": None,
        "scenarios": {},
        "complete": False,
    }
    print(f"bench.compare: {', '.join(ns.scenarios)} at size {ns.size} on "
          f"{' then '.join(ns.servers)} (ours on {ns.engine}, commit {results['revision']}"
          + (f"; Synapse {synapse['synapse']}" if synapse else "") + f"); results: {json_path}",
          flush=True)
    active: list[ProcessServer] = []
    interrupt_on_signals()  # the reactor takes them over while it runs
    try:
        run(lambda: run_all(settings, results, active))
    except KeyboardInterrupt:
        results["error"] = "interrupted"
        print("bench.compare: interrupted", file=sys.stderr)
        for scenario in results["scenarios"].values():
            for run_record in scenario["runs"].values():
                if "elapsed_s" not in run_record:  # the run under way
                    run_record["error"] = "interrupted"
    except Exception as e:  # a bug here, not in a scenario: keep what was measured
        results["error"] = repr(e)
        print(f"bench.compare: failed: {e!r}", file=sys.stderr)
    finally:
        for name in ns.scenarios:  # in-process parts a stopped reactor left running
            leftovers = getattr(sys.modules.get(f"bench.{name}"), "close_leftovers", None)
            if callable(leftovers):
                try:
                    leftovers()
                except Exception as e:
                    print(f"bench.compare: cleaning up after {name}: {e!r}", file=sys.stderr)
        for server in list(active):  # a run the reactor left behind (^C, SIGTERM)
            try:
                server.stop()
            except Exception as e:
                print(f"bench.compare: stopping {server.data_dir}: {e!r}", file=sys.stderr)
        results["finished_at"] = datetime.datetime.now(datetime.UTC).isoformat(
            timespec="seconds")
        results["complete"] = (not results.get("error")
                               and len(results["scenarios"]) == len(ns.scenarios)
                               and not errors_of(results))
        write_outputs(results, json_path)
    print()
    print(render_text(all_rows(results)))
    print()
    print(RATIO_NOTE)
    for line in errors_of(results):
        print(f"  {line}", file=sys.stderr)
    print(f"\nJSON: {json_path}\nMarkdown: {json_path.with_suffix('.md')}")
    return 0 if results["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
