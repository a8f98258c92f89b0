"""The one masking of secrets, and the one filter of text bound for a terminal.

A password may reach a record, a tag, a log line or a terminal only as `***`; text read
from a store reaches a terminal only without control characters.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

# libpq reads PGPASSWORD under each of these drivers (psycopg2, psycopg 3).
POSTGRES_SCHEMES = ("postgresql", "postgresql+psycopg2", "postgresql+psycopg")


# A query parameter that carries a secret (`?password=`, libpq's `sslpassword`, `token=`), also
# in Hydra's escaped form (`password\=`, as `-m` writes overrides). Its value ends at the next
# parameter, or before quotes and brackets that close the text around the URL (a YAML or shell
# quote), so masking never breaks the record it runs over; an escaped character (`\ `, `\,`)
# belongs to the value.
SECRET_QUERY = re.compile(
    r"(?i)(?P<key>[?&;][a-z_]*(?:password|passwd|pwd|secret|token)\\?=)"
    r"(?P<value>(?:\\.|[^&#\n])*?)(?=(?:\\?['\"]|[,;)\]}])*(?:[&#\n]|$))"
)

SEPARATOR = re.compile(r"\\?://")  # Hydra's multirun escapes `:` in overrides (`postgresql\://`)


def _password_span(rest: str) -> tuple[int, int] | None:
    """Where the password sits in a URL's text after `://`: from the first `:` to the LAST `@`
    of the userinfo, so a password holding `:`, `@`, `/` or a quote is found whole."""
    at = rest.rfind("@")
    if at > 0 and ":" in rest[:at]:
        return rest.index(":") + 1, at
    return None


def url_password(url: str | None) -> str | None:
    """The password of a URL as `mask_url` sees it (None without one)."""
    sep = SEPARATOR.search(url or "")
    span = _password_span(url[sep.end() :]) if sep else None
    return url[sep.end() :][span[0] : span[1]] if span else None


def mask_url(url: str | None) -> str | None:
    r"""The one masking of a URL: its password, and any secret query parameter, become ***.

    The password runs from the first `:` to the LAST `@` (SQLAlchemy's own `make_url` stops at
    the first `@`); Hydra's escaped form (`postgresql\://u\:pw@h\:5432`) is masked the same way.
    """
    sep = SEPARATOR.search(url or "")
    if sep is None:
        return url
    head, rest = url[: sep.end()], url[sep.end() :]
    if span := _password_span(rest):
        rest = rest[: span[0]] + "***" + rest[span[1] :]
    return head + SECRET_QUERY.sub(lambda m: m["key"] + "***", rest)


URL = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*\\?://"
    # A password holding raw whitespace (check_url refuses it, but Hydra writes its files first):
    # from `user:` to the next `@` on the line, never into another URL (`host:5432` is a port).
    r"(?:[^\s/@:\\]*\\?:(?!\d+(?:[\s/?#]|$))(?=[^@\n]*?\s)(?:(?!\\?://)[^\n@])+@)?"
    r"(?:\\\s|\S)+"  # the rest, with Hydra's escaped whitespace (`\ `)
)

# A value that is one URL, or one `key=URL` override: with raw whitespace it is masked whole.
KEY_URL = re.compile(r"(?s)(?P<key>[\w.+~/@-]+=)?(?P<url>[A-Za-z][A-Za-z0-9+.-]*\\?://.*)")


def mask_text(value: Any) -> str:
    """Text with every URL masked by `mask_url`: configs, overrides, commands, tracebacks, tags."""
    return URL.sub(lambda m: mask_url(m.group()), str(value))


def split_password(url: str) -> tuple[str, str | None]:
    """A PostgreSQL URL without its password, and the password: a child process gets the URL on
    its command line (any local user reads it in `ps`) and the password in PGPASSWORD."""
    parts = urlsplit(url)
    if parts.scheme not in (*POSTGRES_SCHEMES, "postgres") or parts.password is None:
        return url, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}")), unquote(parts.password)


CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(value: Any) -> str:
    """One line for the terminal: masked, and with no control characters (a run name or tag on
    a shared server, written by anyone, could otherwise carry escape sequences)."""
    return CONTROL.sub("?", mask_text(value))


def mask_data(data: Any) -> Any:
    """A record (dicts, lists, strings) with every string masked, before it is serialised."""
    if isinstance(data, dict):
        return {k: mask_data(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [mask_data(v) for v in data]
    if not isinstance(data, str):
        return data
    whole = KEY_URL.fullmatch(data)
    if whole and any(ch.isspace() for ch in data):
        return (whole["key"] or "") + mask_url(whole["url"])
    return mask_text(data)
