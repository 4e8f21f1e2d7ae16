"""Which Host and Origin headers name this server: the guard against DNS rebinding.

A web page on ``evil.example`` can make its own name resolve to 127.0.0.1
and then talk to a local server "same-origin": the browser sends
``Host: evil.example:PORT`` and ``Origin: http://evil.example:PORT``. So a
request is served only when its Host names this server: an IP address (a
rebinding attack needs a name it controls, never a literal address), a
loopback name, or a name the operator allowed with ``--allow-host``. A
browser's Origin must then name the same host and port, or be allowed
explicitly with ``--allow-origin``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost"})


def split_host(host: str) -> tuple[str, int | None]:
    """``"Example.org:80"`` -> ``("example.org", 80)``; ``"[::1]:8765"`` -> ``("::1", 8765)``.
    ValueError for a malformed value."""
    host = host.strip()
    if not host:
        raise ValueError("empty host")
    parsed = urlsplit(f"//{host}")
    name = parsed.hostname
    if name is None or parsed.path or parsed.query or parsed.fragment or parsed.username:
        raise ValueError(f"malformed host {host!r}")
    return name.rstrip(".").lower(), parsed.port


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class HostPolicy:
    """``allowed_names``: extra host names (``--allow-host``), lower case, without port; a
    leading dot (``.example.org``) allows that domain and its subdomains."""

    allowed_names: frozenset[str] = field(default_factory=frozenset)
    allowed_origins: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def build(cls, hosts: Iterable[str] = (), origins: Iterable[str] = ()) -> HostPolicy:
        """ValueError for a value that can never match (a malformed host, origin ``null``)."""
        names = set()
        for host in (h.strip() for h in hosts):
            if host:
                dot = "." if host.startswith(".") else ""
                names.add(dot + split_host(host.lstrip("."))[0])
        allowed = frozenset(o.strip().rstrip("/").lower() for o in origins if o.strip())
        if "null" in allowed:
            raise ValueError(
                "--allow-origin null would admit every sandboxed or file:// page; serve the "
                "page from an http(s) origin and allow that one"
            )
        return cls(frozenset(names), allowed)

    def name_ok(self, name: str) -> bool:
        if is_ip_literal(name) or name in LOOPBACK_NAMES or name.endswith(".localhost"):
            return True
        if name in self.allowed_names:
            return True
        return any(
            a.startswith(".") and (name.endswith(a) or name == a[1:]) for a in self.allowed_names
        )

    def host_ok(self, host: str | None) -> bool:
        """The request's Host header names this server (HTTP/1.1 always sends one)."""
        if host is None:
            return False
        try:
            name, _ = split_host(host)
        except ValueError:
            return False
        return self.name_ok(name)

    def origin_ok(self, origin: str | None, host: str | None) -> bool:
        """No Origin: not a browser (the token holds those). Otherwise the page must come
        from this very server (scheme http(s), the request's host and port) or be allowed."""
        if origin is None:
            return True
        origin = origin.strip().rstrip("/").lower()
        if origin in self.allowed_origins:
            return True
        if host is None or not self.host_ok(host):
            return False
        try:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or parts.path:
                return False
            return split_host(parts.netloc) == split_host(host)
        except ValueError:  # not a URL at all ("http://[x")
            return False
