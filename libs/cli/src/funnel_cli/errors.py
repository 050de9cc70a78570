"""One clear line for the failures an operator meets, instead of a traceback.

A database or broker that is not there, a wrong URL, a refused setting: each says what
it could not do and where, and ``funnel`` exits 1. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from funnel_cli.platform import PlatformNotFound

if TYPE_CHECKING:
    from pydantic import ValidationError

_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]+):[^@\s]+@")


def without_passwords(text: str) -> str:
    """``text`` with any ``user:password@`` in a URL shortened to ``user@``."""
    return _PASSWORD_IN_URL.sub(r"\1:***@", text)


def _settings_problem(error: ValidationError) -> str:
    problems = []
    for each in error.errors():
        where = ".".join(str(part) for part in each["loc"])
        message = str(each["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "invalid settings: " + "; ".join(problems)


def _where(database_url: str | None) -> str:
    if not database_url:
        return "PostgreSQL"
    parts = urlsplit(database_url)
    return f"PostgreSQL at {parts.hostname}:{parts.port or 5432} as {parts.username}"


def explain(error: BaseException, *, database_url: str | None = None) -> str | None:
    """The one line that says what went wrong, or None for an unexpected error (a bug).
    ``database_url`` is the one the command used, to say which server failed."""
    # Imported here, when something failed: every `funnel` command starts without them.
    import asyncpg
    import httpx
    from aiokafka.errors import KafkaError
    from pydantic import ValidationError

    from funnel_common.db import MigrationChanged

    database = _where(database_url)
    if isinstance(error, PlatformNotFound | MigrationChanged):
        message = str(error)
    elif isinstance(error, ValidationError):
        message = _settings_problem(error)
    elif isinstance(error, asyncpg.ClientConfigurationError):
        message = f"the database URL is not valid: {error}"
    elif isinstance(error, asyncpg.InsufficientPrivilegeError):
        message = f"{database} refused: {error} (is this the service's own database URL?)"
    elif isinstance(error, asyncpg.PostgresError | asyncpg.InterfaceError):
        message = f"{database} refused: {error}"
    elif isinstance(error, httpx.HTTPError):
        request = getattr(error, "_request", None)
        where = f" {request.url}" if request is not None else ""
        message = f"cannot reach{where}: {error or type(error).__name__}"
    elif isinstance(error, KafkaError):
        message = f"cannot reach the broker: {error}"
    elif isinstance(error, TimeoutError):
        message = f"timed out waiting for {database} or the broker"
    elif isinstance(error, OSError) and error.filename is not None:
        message = f"{error.filename}: {error.strerror}"
    elif isinstance(error, OSError):
        message = f"cannot reach {database}: {error}"
    else:
        return None
    return without_passwords(message)
