"""Log output: one line per request (``cheaplm.requests``), as JSON or as text, and the
process's log format. Never a prompt, never a key (only its 14-character prefix)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import orjson

from ..money import format_usd
from ..outcome import Outcome

REQUESTS = "cheaplm.requests"


def request_line(outcome: Outcome) -> str:
    """The text form: ``req_… alice cheaplm_ab… messages claude-sonnet-4.5 200 …``."""
    fields = [outcome.request_id, f"user={outcome.username or '-'}", f"key={outcome.key_prefix or '-'}",
              f"endpoint={outcome.endpoint}", f"model={outcome.model or '-'}", f"status={outcome.status}"]
    if outcome.channel:
        fields.append(f"channel={outcome.channel} attempts={outcome.attempts}")
    if outcome.error_type:
        fields.append(f"error={outcome.error_type}")
    tokens = (outcome.input_tokens, outcome.cache_write_5m + outcome.cache_write_1h, outcome.cache_read,
              outcome.output_tokens)
    if any(tokens):
        fields.append("tokens=%d/%d/%d/%d" % tokens)
    if outcome.server_tool_use:
        fields.append(f"server_tools={outcome.server_tool_use}")
    fields.append(f"cost={format_usd(outcome.cost)}")
    if outcome.partial:
        fields.append("partial")
    if outcome.ttft_ms is not None:
        fields.append(f"ttft_ms={outcome.ttft_ms:.1f}")
    if outcome.duration_ms is not None:
        fields.append(f"ms={outcome.duration_ms:.1f}")
    return " ".join(fields)


class JsonFormatter(logging.Formatter):
    """Every record as one JSON object; a request line carries its outcome's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                "level": record.levelname, "logger": record.name}
        outcome = getattr(record, "outcome", None)
        if isinstance(outcome, Outcome):
            line["event"] = "request"
            line.update(outcome.as_log())
        else:
            line["message"] = record.getMessage()
        worker = getattr(record, "worker", None)
        if worker is not None:
            line["worker"], line["pid"] = worker, record.process
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
WORKER_TEXT_FORMAT = "%(asctime)s %(levelname)s [worker %(worker)s pid %(process)d] %(name)s: %(message)s"


class WorkerTag(logging.Filter):
    """Marks every record with the worker (of ``serve --workers``) that speaks."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        return True


def configure(log_format: str, level: str, worker: int | None = None) -> None:
    """The process's logging (set up by ``logging.basicConfig``): its stream handlers
    write ``json`` (one object a line) or ``text``. Handlers someone else installed (a
    test runner's) are left as they are. ``worker``: this process is that worker of
    ``serve --workers``, and every line says so (with its pid)."""
    text = TEXT_FORMAT if worker is None else WORKER_TEXT_FORMAT
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(text)
    root = logging.getLogger()
    for handler in root.handlers:
        if type(handler) is logging.StreamHandler:
            handler.setFormatter(formatter)
            if worker is not None:
                handler.addFilter(WorkerTag(worker))
    root.setLevel(level.upper())


class _Line:
    """The text line of an outcome, made when a handler formats the record's message:
    the JSON format never asks for it (it writes the outcome's fields)."""

    __slots__ = ("outcome",)

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome

    def __str__(self) -> str:
        return request_line(self.outcome)


def log_request(logger: logging.Logger, outcome: Outcome) -> None:
    if logger.isEnabledFor(logging.INFO):
        logger.info("%s", _Line(outcome), extra={"outcome": outcome})
