"""Structured logs: one line per event, as logfmt (`text`) or JSON (`json`).

Call sites attach fields with `extra=kv(claim=..., device=...)`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_FIELDS = "fields"


def kv(**fields: Any) -> dict[str, Any]:
    """The `extra=` argument that attaches key=value fields to one log line."""
    return {_FIELDS: fields}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = getattr(record, _FIELDS, None) or {}
    if record.exc_info and record.exc_info[1] is not None:
        fields = {**fields, "exception": repr(record.exc_info[1])}
    return fields


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _logfmt_value(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, list | tuple | set):
        text = ",".join(str(v) for v in value)
    else:
        text = json.dumps(value, default=str)
    if text == "" or any(c in text for c in ' ="\n\t'):
        return json.dumps(text)
    return text


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in parts.items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": _timestamp(record),
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": record.getMessage(),
                **_fields(record),
            },
            default=str,
        )


def setup(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The kubernetes client and urllib3 are chatty at debug level.
    for noisy in ("urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.INFO))
