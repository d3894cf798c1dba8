"""Outbound HTTP to customer URLs (webhooks) without server-side request forgery.

Rules (API.md "Webhooks"; OWASP SSRF Prevention Cheat Sheet):

* ``https`` only. With the operator setting ``WAVIS_WEBHOOKS_ALLOW_LOOPBACK=1`` (off by
  default; for the project's own tests) ``http`` is allowed too, but then every address the
  host resolves to must be loopback.
* No credentials in the URL; IP literals only in canonical form (``127.1``, ``2130706433``,
  ``0x7f000001`` are refused: ``getaddrinfo`` would read them as addresses).
* Names: no ``localhost``, no single-label names (resolver search lists would expand them to
  internal hosts), nothing under ``.local``, ``.localhost``, ``.internal``, ``.intranet``,
  ``.localdomain``, ``.home.arpa``, ``.lan``.
* Every resolved address must be public (``is_public_address``): not loopback, private
  (RFC 1918, fc00::/7), link-local (169.254/16 — cloud metadata — and fe80::/10), CGNAT
  (100.64/10, RFC 6598), multicast, reserved, unspecified, documentation/benchmarking ranges, or
  any IPv6 form that embeds an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible
  ``::a.b.c.d``, NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16, Teredo 2001::/32) —
  these are refused outright whatever they embed.
* The host is resolved once per delivery (``resolve_and_vet``) and the connection goes to
  exactly the vetted addresses: ``PinnedResolver`` hands them to aiohttp's connector, so
  there is no second lookup an attacker's DNS could answer differently (DNS rebinding), while
  TLS SNI, certificate checks and the ``Host`` header still use the URL's name.
* Redirects are never followed (a 3xx is a failed attempt); the response body is read up to
  a cap, without decompression; the whole request (resolution included) has one deadline.

The resolver is an aiohttp ``AbstractResolver`` (default: ``ThreadedResolver``, i.e.
``getaddrinfo``); tests inject their own at this boundary.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

MAX_URL_LENGTH = 2048
BLOCKED_NAMES = ("localhost",)
BLOCKED_SUFFIXES = (".local", ".localhost", ".internal", ".intranet", ".localdomain", ".home.arpa", ".lan")
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


class TargetError(Exception):
    """A webhook target that may not or cannot be reached; ``reason`` is a short stable word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class UnsafeTarget(TargetError):
    """Refused by the SSRF guard (scheme, name or address)."""


class UnresolvableTarget(TargetError):
    """The name does not resolve (or resolution timed out)."""


def address_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_loopback: bool = False) -> str | None:
    """Why ``ip`` is not a public address (None when it is). ``allow_loopback`` admits
    127.0.0.0/8 and ::1 (tests only)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "IPv6 address with a zone"
        if ip in IPV4_MAPPED:
            return "IPv4-mapped IPv6 address"
        if ip.sixtofour is not None:
            return "6to4 IPv6 address"
        if ip.teredo is not None:
            return "Teredo IPv6 address"
        if any(ip in n for n in NAT64):
            return "NAT64 IPv6 address"
        if ip in IPV4_COMPATIBLE and not ip.is_loopback:
            return "IPv4-compatible IPv6 address" if not ip.is_unspecified else "unspecified address"
    if ip.is_loopback:
        return None if allow_loopback else "loopback address"
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_link_local:
        return "link-local address"
    if ip.is_multicast:
        return "multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT:
        return "CGNAT (shared address space) address"
    if ip.is_reserved:
        return "reserved address"
    if ip.is_private:
        return "private address"
    if not ip.is_global:
        return "address that is not globally routable"
    return None


def is_public_address(ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    except ValueError:
        return False
    return address_problem(addr) is None


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _numeric_ipv4_shorthand(host: str) -> bool:
    """``127.1``, ``2130706433``, ``0x7f.0.0.1``, ``0177.0.0.1``: inet_aton reads them as IPv4."""
    try:
        socket.inet_aton(host)
    except (OSError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Target:
    url: URL
    host: str  # lower case, IDNA-encoded, without a trailing dot
    port: int
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None  # the URL's IP literal, if any
    secure: bool


def check_url(url: str, allow_loopback: bool = False) -> Target:
    """Static checks of a webhook URL (no DNS). Raises UnsafeTarget."""
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        raise UnsafeTarget("url", f"the URL must be a string of at most {MAX_URL_LENGTH} characters")
    try:
        u = URL(url)
        host = u.raw_host
    except (ValueError, TypeError, UnicodeError):
        raise UnsafeTarget("url", "the URL does not parse") from None
    scheme = (u.scheme or "").lower()
    if scheme not in ("https", "http") or not u.is_absolute() or not host:
        raise UnsafeTarget("scheme", "the URL must be an absolute https:// URL")
    if scheme == "http" and not allow_loopback:
        raise UnsafeTarget("scheme", "webhook URLs must use https")
    if u.raw_user is not None or u.raw_password is not None:
        raise UnsafeTarget("credentials", "credentials in the URL are not accepted (sign with the webhook secret)")
    if u.raw_fragment:
        raise UnsafeTarget("url", "the URL must not have a fragment")
    host = host.lower().rstrip(".")
    if not host:
        raise UnsafeTarget("host", "the URL has no host")
    try:
        port = u.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise UnsafeTarget("url", "the URL's port is not valid") from None
    ip = _ip_literal(host)
    if ip is not None:
        problem = address_problem(ip, allow_loopback)
        if problem:
            raise UnsafeTarget("address", f"the URL's host is a {problem}")
    else:
        if _numeric_ipv4_shorthand(host):
            raise UnsafeTarget("host", "IP addresses must be written in canonical dotted form")
        if host in BLOCKED_NAMES or host.endswith(BLOCKED_SUFFIXES):
            raise UnsafeTarget("host", f"{host!r} is an internal name")
        if "." not in host:
            raise UnsafeTarget("host", "the host must be a fully qualified domain name")
        if len(host) > 253 or any(not 1 <= len(label) <= 63 for label in host.split(".")):
            # (the resolver's IDNA codec raised UnicodeError on these: a 500)
            raise UnsafeTarget("host", "the host is not a valid DNS name (labels of 1 to 63 characters, "
                                       "at most 253 in all)")
    if scheme == "http" and ip is not None and not ip.is_loopback:
        raise UnsafeTarget("scheme", "http is allowed only to loopback addresses")
    return Target(u, host, port, ip, scheme == "https")


def _info(host: str, ip, port: int) -> dict[str, Any]:
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return {"hostname": host, "host": str(ip), "port": port, "family": family, "proto": 0, "flags": 0}


async def resolve_and_vet(target: Target, resolver: AbstractResolver, allow_loopback: bool = False,
                          timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """Resolve ``target``'s host ONCE and check every address. Returns aiohttp resolve results
    for ``PinnedResolver``. Raises UnsafeTarget (a non-public address among the answers, or
    http to a non-loopback address) or UnresolvableTarget."""
    if target.ip is not None:
        infos = [_info(target.host, target.ip, target.port)]
    else:
        try:
            async with asyncio.timeout(timeout_s):
                infos = await resolver.resolve(target.host, target.port, family=socket.AF_UNSPEC)
        except TimeoutError:
            raise UnresolvableTarget("dns", f"resolving {target.host!r} timed out") from None
        except (OSError, UnicodeError) as exc:  # UnicodeError: a name the IDNA codec refuses
            raise UnresolvableTarget("dns", f"{target.host!r} does not resolve ({exc.__class__.__name__})") from None
        if not infos:
            raise UnresolvableTarget("dns", f"{target.host!r} does not resolve")
    vetted = []
    for info in infos:
        ip = _ip_literal(str(info["host"]))
        if ip is None:
            raise UnsafeTarget("address", f"{target.host!r} resolved to something that is not an address")
        problem = address_problem(ip, allow_loopback)
        if problem:
            raise UnsafeTarget("address", f"{target.host!r} resolves to a {problem} ({ip})")
        if not target.secure and not ip.is_loopback:
            raise UnsafeTarget("scheme", "http is allowed only to loopback addresses")
        vetted.append(_info(target.host, ip, target.port))
    return vetted


class PinnedResolver(AbstractResolver):
    """Answers aiohttp's connector with the already vetted addresses of one host, and refuses
    any other name (so nothing is ever looked up a second time)."""

    def __init__(self, host: str, infos: list[dict[str, Any]]) -> None:
        self._host = host
        self._infos = infos

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        if host.lower().rstrip(".") != self._host:
            raise OSError(f"pinned resolver for {self._host!r} asked for {host!r}")
        out = [dict(i, port=port) for i in self._infos if family in (socket.AF_UNSPEC, i["family"])]
        if not out:
            raise OSError(f"no vetted address of family {family} for {host!r}")
        return out

    async def close(self) -> None:
        return None


@dataclass(frozen=True)
class PostResult:
    status: int
    body: bytes  # at most ``max_response_bytes``
    address: str  # the vetted address the request went to (first of the list)


async def safe_post(url: str, body: bytes, headers: dict[str, str], *, resolver: AbstractResolver,
                    allow_loopback: bool = False, timeout_s: float = 10.0,
                    max_response_bytes: int = 64 * 1024, ssl_context: "ssl.SSLContext | None" = None) -> PostResult:
    """POST ``body`` to ``url`` under the rules above. The deadline ``timeout_s`` covers
    resolution, connection, TLS, the request and reading the (capped) response. Certificates
    are verified against the URL's host name (``ssl_context``: default trust store unless given).

    Raises: UnsafeTarget, UnresolvableTarget, asyncio.TimeoutError, aiohttp.ClientError.
    """
    target = check_url(url, allow_loopback)
    async with asyncio.timeout(timeout_s):
        infos = await resolve_and_vet(target, resolver, allow_loopback, timeout_s)
        connector = aiohttp.TCPConnector(resolver=PinnedResolver(target.host, infos), use_dns_cache=False,
                                         force_close=True, limit=1, ssl=ssl_context if ssl_context else True)
        async with aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=False,
                                         timeout=aiohttp.ClientTimeout(total=None)) as session:
            async with session.post(target.url, data=body, headers=headers, allow_redirects=False) as resp:
                got = bytearray()
                while len(got) < max_response_bytes:
                    chunk = await resp.content.read(max_response_bytes - len(got))
                    if not chunk:
                        break
                    got += chunk
                return PostResult(resp.status, bytes(got), infos[0]["host"])
