"""optuna-dashboard's app behind a Host check: the server `sweep dashboard` runs as its child.

optuna-dashboard's own server answers any Host header, so a web page whose DNS name an attacker
rebinds to 127.0.0.1 could read every study and write notes into them from the user's browser
(DNS rebinding); MLflow's server answers such a request 403. This serves optuna-dashboard's WSGI
app (`optuna_dashboard.wsgi`) on wsgiref's threaded server, as its CLI does, answering 403 to a
Host (or an Origin) that is not this server's own name. The storage URL comes without its
password (`sweep.core.processes.without_password`: PGPASSWORD carries it), so `ps` shows no secret.

    python -m sweep.serve.dashboard_app STORAGE --host 127.0.0.1 --port 8080
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
WILDCARD = ("0.0.0.0", "::", "")
FORBIDDEN = b"403 Forbidden: this dashboard answers only to its own host name\n"
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The Host headers a browser sends for this server: loopback and the bound name, with port."""
    names = (*LOOPBACK, f"[{host}]" if ":" in host else host)
    return frozenset(f"{name}:{port}".lower() for name in names)


def is_ip_literal(header: str, port: int) -> bool:
    """`10.0.0.5:8080` or `[fe80::1]:8080`: no DNS name, so no name an attacker can rebind."""
    name, _, given = header.rpartition(":")
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return given == str(port)


def trusted(header: str, allowed: frozenset[str], wildcard_port: int | None) -> bool:
    """Whether a Host (or an Origin's host) names this server."""
    header = header.lower()
    return header in allowed or (wildcard_port is not None and is_ip_literal(header, wildcard_port))


def host_check(app: WSGIApp, host: str, port: int) -> WSGIApp:
    """`app` behind the check: 403 for a Host not in `allowed_hosts`, or an Origin of another
    site. Bound to a wildcard, any IP literal with the port is accepted too (a rebinding page
    can only send a DNS name)."""
    allowed = allowed_hosts(host, port)
    wildcard_port = port if host in WILDCARD else None

    def checked(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        origin = environ.get("HTTP_ORIGIN")
        ok = trusted(environ.get("HTTP_HOST", ""), allowed, wildcard_port) and (
            origin is None or trusted(urlsplit(origin).netloc, allowed, wildcard_port)
        )
        if ok:
            return app(environ, start_response)
        start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8")])
        return [FORBIDDEN]

    return checked


class _Quiet(WSGIRequestHandler):
    """No access log line per request (the CLI's `--quiet`)."""

    def log_message(self, *args: Any) -> None:
        pass


class _Threaded(ThreadingMixIn, WSGIServer):
    """wsgiref's server with a thread per request, as optuna-dashboard's CLI runs it."""

    daemon_threads = True


class _Threaded6(_Threaded):
    address_family = socket.AF_INET6


def server(app: WSGIApp, host: str, port: int) -> WSGIServer:
    """The bound server, on IPv4 or IPv6 as the host says."""
    cls = _Threaded6 if ":" in host else _Threaded
    return make_server(host, port, app, server_class=cls, handler_class=_Quiet)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the storage's studies until the process is stopped (SIGTERM from `sweep dashboard`)."""
    parser = argparse.ArgumentParser(prog="python -m sweep.serve.dashboard_app")
    parser.add_argument("storage")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    from optuna_dashboard import wsgi  # optuna, SQLAlchemy, Bottle: no TensorFlow

    app = host_check(wsgi(args.storage), args.host, args.port)
    server(app, args.host, args.port).serve_forever()


if __name__ == "__main__":
    main()
