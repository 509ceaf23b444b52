"""Scenario ``media``: upload and download throughput of the media repository.

    python -m bench.media --engine sqlite|postgres [--size full|small|tiny] [--json PATH]

One user (setup, not timed) uploads ``files`` files of ``size_kib`` KiB of
random bytes (``application/octet-stream``, so no thumbnailing) with
``concurrency`` uploads in flight (``POST /_matrix/media/v3/upload``), then
downloads each once with the same concurrency
(``GET /_matrix/client/v1/media/download/{server}/{mediaId}``) and checks the
bytes. Figures: MB/s and requests/s each way, and per-request p50 latency.
Requests are sent once, never retried. The whole client-server path is
measured (HTTP parsing, auth, the database row, the disk write or read).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from typing import Any

from twisted.internet import defer, reactor
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from bench.client import BytesProducer, MatrixClient
from bench.fanout import latency_summary, scenario_main
from bench.send import is_cancellation
from bench.server import Target
from bench.sync import register_users

NAME = "media"
SIZES: dict[str, dict[str, Any]] = {
    "full": {"files": 200, "size_kib": 1024, "concurrency": 8},
    "small": {"files": 50, "size_kib": 1024, "concurrency": 8},
    "tiny": {"files": 5, "size_kib": 64, "concurrency": 2},
}


async def _bounded(jobs: list[Any], concurrency: int) -> list[Any]:
    sem = defer.DeferredSemaphore(concurrency)
    return list(await defer.gatherResults(
        [sem.run(lambda job=job: defer.ensureDeferred(job())) for job in jobs],
        consumeErrors=True))


async def run_scenario(target: Target, params: dict[str, Any], *,
                       ours: bool) -> dict[str, Any]:
    files: int = params["files"]
    size = int(params["size_kib"]) * 1024
    concurrency: int = params["concurrency"]
    result: dict[str, Any] = {"scenario": NAME, "params": params, "figures": {},
                              "complete": False, "setup": {}}
    client = MatrixClient(target.base_url)
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = concurrency
    pool.retryAutomatically = False
    agent = Agent(reactor, pool=pool, connectTimeout=10)
    base = target.base_url.rstrip("/")
    try:
        run_id = secrets.token_hex(3)
        (session,) = await register_users(client, target, [f"media{run_id}"],
                                          secrets.token_urlsafe(12))
        auth = f"Bearer {session.access_token}".encode("ascii")
        payloads = [os.urandom(size) for _ in range(files)]
        uris: list[str] = [""] * files
        up_latency: list[float] = []
        down_latency: list[float] = []
        mismatches = 0

        def upload_job(i: int) -> Any:
            async def job() -> None:
                started = time.perf_counter()
                response = await agent.request(
                    b"POST", f"{base}/_matrix/media/v3/upload?filename=f{i}.bin".encode(),
                    Headers({b"Authorization": [auth],
                             b"Content-Type": [b"application/octet-stream"]}),
                    BytesProducer(payloads[i]))
                body = await readBody(response)
                if response.code != 200:
                    raise RuntimeError(f"upload answered {response.code}: {body[:200]!r}")
                import json
                uris[i] = json.loads(body)["content_uri"]
                up_latency.append(time.perf_counter() - started)
            return job

        def download_job(i: int) -> Any:
            async def job() -> None:
                nonlocal mismatches
                server, media_id = uris[i][len("mxc://"):].split("/", 1)
                started = time.perf_counter()
                response = await agent.request(
                    b"GET", f"{base}/_matrix/client/v1/media/download/{server}/{media_id}"
                    .encode(), Headers({b"Authorization": [auth]}), None)
                body = await readBody(response)
                down_latency.append(time.perf_counter() - started)
                if response.code != 200 or body != payloads[i]:
                    mismatches += 1
            return job

        started = time.perf_counter()
        await _bounded([upload_job(i) for i in range(files)], concurrency)
        up_s = time.perf_counter() - started
        started = time.perf_counter()
        await _bounded([download_job(i) for i in range(files)], concurrency)
        down_s = time.perf_counter() - started
        mb = files * size / 1e6
        result.update({"upload_s": round(up_s, 3), "download_s": round(down_s, 3),
                       "upload_ms": latency_summary(up_latency),
                       "download_ms": latency_summary(down_latency),
                       "mismatches": mismatches})
        kib = params["size_kib"]
        result["figures"] = {
            "upload_mb_s": {"value": round(mb / up_s, 1), "unit": "MB/s", "better": "higher",
                            "label": f"upload of {kib} KiB files, {concurrency} in flight"},
            "upload_req_s": {"value": round(files / up_s, 1), "unit": "req/s",
                             "better": "higher", "label": f"uploads of {kib} KiB per second"},
            "download_mb_s": {"value": round(mb / down_s, 1), "unit": "MB/s",
                              "better": "higher",
                              "label": f"download of {kib} KiB files, {concurrency} in flight"},
            "download_req_s": {"value": round(files / down_s, 1), "unit": "req/s",
                               "better": "higher",
                               "label": f"downloads of {kib} KiB per second"},
        }
        result["checks_passed"] = mismatches == 0 and all(uris)
        result["complete"] = result["checks_passed"]
        print(f"  upload {mb / up_s:.1f} MB/s ({files / up_s:.1f}/s), download "
              f"{mb / down_s:.1f} MB/s ({files / down_s:.1f}/s); mismatches {mismatches}",
              flush=True)
    except Exception as e:
        if is_cancellation(e) or isinstance(e, asyncio.CancelledError):
            raise
        result["error"] = repr(e)
    finally:
        await client.close()
        await pool.closeCachedConnections()
    return result


def main(argv: list[str] | None = None) -> int:
    return scenario_main(NAME, SIZES, run_scenario, argv)


if __name__ == "__main__":
    sys.exit(main())
