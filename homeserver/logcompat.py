"""Synapse's ``log_config`` files, loaded as they are.

Synapse generates a logging dictConfig naming its own classes
(``synapse.logging.handlers.PeriodicallyFlushingMemoryHandler``, the
``synapse.logging.context.LoggingContextFilter`` of older files, the JSON
formatters) and a format with ``%(request)s``. ``load_log_config`` maps those
class names onto the classes here and gives every log record a ``request``
attribute, so such a file configures our logging unchanged.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.config
import logging.handlers
import threading
import time
from typing import Any

# what a record carries when no request is being served
NO_REQUEST = "-"

# the request being served (``GET-42``), for every line logged while serving
# it: set by the HTTP resource, carried through the request's coroutines
current_request: contextvars.ContextVar[str] = contextvars.ContextVar(
    "current_request", default=NO_REQUEST)


class PeriodicallyFlushingMemoryHandler(logging.handlers.MemoryHandler):
    """Buffers records and writes them to ``target`` when the buffer is full,
    on a record at ``flushLevel`` or above, and at least every ``period``
    seconds (Synapse's handler of the same name and arguments)."""

    def __init__(self, capacity: int, flushLevel: int = logging.ERROR,  # noqa: N803
                 target: logging.Handler | None = None, flushOnClose: bool = True,  # noqa: N803
                 period: float = 5.0, reactor: Any = None) -> None:
        super().__init__(capacity, flushLevel, target, flushOnClose)
        self._period = period
        self._last_flush = time.monotonic()
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_periodically,
                                         name="log-flusher", daemon=True)
        self._flusher.start()

    def _flush_periodically(self) -> None:
        while not self._stop.wait(self._period):
            self.flush()

    def shouldFlush(self, record: logging.LogRecord) -> bool:  # noqa: N802 - logging's name
        return super().shouldFlush(record) or \
            time.monotonic() - self._last_flush >= self._period

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        super().flush()

    def close(self) -> None:
        self._stop.set()
        super().close()


class LoggingContextFilter(logging.Filter):
    """Older Synapse files attach this filter (with a ``request`` default)."""

    def __init__(self, request: str = "", **_: Any) -> None:
        super().__init__()
        self.default = request or NO_REQUEST

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request"):
            record.request = self.default
        return True


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None)))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any extra
    fields the record carries (Synapse's ``JsonFormatter``)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname,
            "namespace": record.name,
            "log": record.getMessage(),
        }
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out and key != "message":
                out[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
        return json.dumps(out, ensure_ascii=False)


class TerseJsonFormatter(JsonFormatter):
    pass


# Synapse's class paths -> ours
_CLASSES = {
    "synapse.logging.handlers.PeriodicallyFlushingMemoryHandler":
        "homeserver.logcompat.PeriodicallyFlushingMemoryHandler",
    "synapse.logging.context.LoggingContextFilter": "homeserver.logcompat.LoggingContextFilter",
    "synapse.logging.JsonFormatter": "homeserver.logcompat.JsonFormatter",
    "synapse.logging.TerseJsonFormatter": "homeserver.logcompat.TerseJsonFormatter",
    "synapse.logging._terse_json.JsonFormatter": "homeserver.logcompat.JsonFormatter",
    "synapse.logging._terse_json.TerseJsonFormatter": "homeserver.logcompat.TerseJsonFormatter",
}


def _map_classes(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (_CLASSES.get(v, v) if k in ("class", "()") and isinstance(v, str)
                    else _map_classes(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_map_classes(v) for v in node]
    return node


_factory_installed = False


def install_record_factory() -> None:
    """Every record gets ``request``: the request being served, ``-`` outside
    one (so a format naming ``%(request)s`` never fails)."""
    global _factory_installed
    if _factory_installed:
        return
    _factory_installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request = current_request.get()
        return record

    logging.setLogRecordFactory(factory)


def load_log_config(config: Any) -> None:
    """Apply a logging dictConfig (ours or Synapse's). ValueError if invalid."""
    if not isinstance(config, dict):
        raise ValueError("the log config must be a mapping")
    install_record_factory()
    logging.config.dictConfig(_map_classes(config))
