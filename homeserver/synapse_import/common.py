"""What the stages of `homeserver import-synapse` share: the context a stage
runs in, the progress display, the report, and small JSON helpers."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from homeserver.storage import synapse_import as rows
from homeserver.storage.database import Database, Txn
from homeserver.synapse_import.source import SynapseConfig, SynapseSource

if TYPE_CHECKING:
    from homeserver.config import Config
    from homeserver.storage import Stores

logger = logging.getLogger(__name__)


class SynapseImportError(Exception):
    """The import cannot go on; the message is for the operator."""


class Progress:
    """What the import shows while it works: one bar per stage.

    ``rich`` draws the bars when it is installed and stderr is a terminal;
    otherwise one log line per stage (and per 10% of a long stage)."""

    def __init__(self, enabled: bool = True) -> None:
        self._rich: Any = None
        if enabled:
            try:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    TextColumn,
                    TimeElapsedColumn,
                )
                from rich.progress import (
                    Progress as RichProgress,
                )
                self._rich = RichProgress(TextColumn("{task.description:<24}"), BarColumn(),
                                          MofNCompleteColumn(), TimeElapsedColumn())
            except ImportError:
                self._rich = None

    def __enter__(self) -> Progress:
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._rich is not None:
            self._rich.stop()

    def stage(self, name: str, total: int) -> Callable[[int], None]:
        """Start a stage of ``total`` items; returns ``advance(n)``."""
        if self._rich is not None:
            task = self._rich.add_task(name, total=max(total, 1))
            if total == 0:
                self._rich.update(task, completed=1)

            def advance_rich(n: int) -> None:
                self._rich.advance(task, n)
            return advance_rich
        logger.info("%s: %d to import", name, total)
        done = [0, 0]

        def advance(n: int) -> None:
            done[0] += n
            tenth = done[0] * 10 // max(total, 1)
            if tenth > done[1]:
                done[1] = tenth
                logger.info("%s: %d of %d", name, done[0], total)
        return advance

    def skip(self, name: str, count: int) -> None:
        if self._rich is not None:
            self._rich.add_task(f"{name} (done before)", total=max(count, 1),
                                completed=max(count, 1))
        else:
            logger.info("%s: done in an earlier run (%d), skipped", name, count)


@dataclass
class ImportReport:
    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    events_per_second: float = 0.0


def now_ms() -> int:
    return int(time.time() * 1000)


def load_json(text: Any) -> Any:
    if isinstance(text, (bytes, memoryview)):
        text = bytes(text).decode("utf-8")
    return json.loads(text) if isinstance(text, str) else text


def dump_json(obj: Any) -> str:
    """JSON as our E2E stores keep it (sorted keys, no spaces)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


@dataclass
class StageContext:
    """What a stage reads from and writes to. A stage is a function
    ``stage(ctx, name)`` that reads Synapse, then writes everything it
    imports and its marker in ONE transaction (``commit``)."""

    src: SynapseSource
    db: Database
    stores: Stores
    config: Config
    syn_config: SynapseConfig
    progress: Progress
    report: ImportReport

    @property
    def server_name(self) -> str:
        return self.config.server_name

    def user_id(self, name: str) -> str:
        """A user ID from Synapse's column (older rows hold the localpart)."""
        return name if name.startswith("@") else f"@{name}:{self.server_name}"

    def local(self, user_id: Any) -> bool:
        return str(user_id).endswith(":" + self.server_name)

    def commit(self, name: str, txn_fn: Callable[[Txn], int]) -> None:
        """Run ``txn_fn`` and record the stage as done, in one transaction."""
        mark = len(self.report.skipped)

        def txn_all(txn: Txn) -> int:
            # a retried transaction starts again: so do the notes it makes
            del self.report.skipped[mark:]
            count = txn_fn(txn)
            rows.add_notes_txn(txn, name, self.report.skipped[mark:])
            rows.mark_done_txn(txn, name, count, now_ms())
            return count
        self.report.counts[name] = self.db.run_txn_blocking(f"import {name}", txn_all)
