"""The one guarded URL fetcher every input loader uses (images, audio, later rasters).

Guards, all from settings: http(s) only; a connect/read timeout and an overall deadline (a server that
drips bytes cannot hold a worker); a byte cap checked against Content-Length and while streaming;
at most N redirects, each hop checked again; and a server-side request forgery guard that refuses
hosts resolving to private, loopback, link-local, multicast, reserved or cloud-metadata addresses
unless ``allow_private_urls`` is set.

Known limit: the address check resolves the host, then httpx resolves it again to connect; a DNS
server that answers differently the second time (rebinding) could slip through. Deployments that
need more should also restrict egress at the network level.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from omniembed.errors import InputTooLarge, InputUnreadable, ParameterInvalid
from omniembed.settings import Settings

__all__ = ["FetchPolicy", "Fetched", "check_url", "fetch", "forbidden_reason", "is_url"]

_METADATA = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
}


@dataclass(frozen=True)
class FetchPolicy:
    timeout_sec: float = 10.0
    max_bytes: int = 64 * 1024 * 1024
    max_redirects: int = 3
    allow_private: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        return cls(
            timeout_sec=settings.fetch_timeout_sec,
            max_bytes=settings.fetch_max_bytes,
            max_redirects=settings.fetch_max_redirects,
            allow_private=settings.allow_private_urls,
        )


@dataclass(frozen=True)
class Fetched:
    content: bytes
    content_type: str
    url: str
    """The final URL, after redirects."""


def is_url(value: object) -> bool:
    return isinstance(value, str) and value[:8].lower().startswith(("http://", "https://"))


def forbidden_reason(address: str) -> str | None:
    """Why this IP may not be fetched from by default, or None when it is a public address."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA:
        return "a cloud metadata address"
    for attr, label in (
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_private", "a private address"),
        ("is_multicast", "a multicast address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(ip, attr):
            return label
    if ip.version == 4 and ip in ipaddress.ip_network("100.64.0.0/10"):
        return "a carrier-grade NAT address"
    return None


def check_url(url: str, policy: FetchPolicy) -> None:
    """Refuse non-http(s) URLs and, unless the policy allows private targets, hosts that resolve to a
    forbidden address (for clients other than ``fetch``, e.g. GDAL or pystac-client)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"http", "https"}:
        raise ParameterInvalid(f"only http and https URLs can be fetched, not {parts.scheme or 'no'} scheme: {url}")
    host = parts.hostname
    if not host:
        raise ParameterInvalid(f"the URL has no host: {url}")
    if policy.allow_private:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise InputUnreadable(f"cannot resolve the host of {url}: {exc}") from None
    for info in infos:
        address = str(info[4][0])
        reason = forbidden_reason(address)
        if reason is not None:
            raise ParameterInvalid(
                f"the URL {url} resolves to {address}, {reason}; fetching it is refused. "
                "Set OMNIEMBED_ALLOW_PRIVATE_URLS=1 to allow private targets on a trusted network."
            )


def fetch(url: str, policy: FetchPolicy) -> Fetched:
    """GET ``url`` under ``policy``; InputUnreadable / InputTooLarge / ParameterInvalid on failure."""
    import httpx

    deadline = time.monotonic() + policy.timeout_sec
    timeout = httpx.Timeout(policy.timeout_sec)
    current = url
    with httpx.Client(follow_redirects=False, timeout=timeout, trust_env=False) as client:
        for _hop in range(policy.max_redirects + 1):
            check_url(current, policy)
            try:
                with client.stream("GET", current, headers={"User-Agent": "omniembed"}) as response:
                    if response.is_redirect:
                        location = response.headers.get("location", "")
                        current = urljoin(current, location)
                        continue
                    if response.status_code >= 400:
                        raise InputUnreadable(f"fetching {url} failed: the server answered HTTP {response.status_code}")
                    declared = int(response.headers.get("content-length") or 0)
                    if declared > policy.max_bytes:
                        raise InputTooLarge(_too_large(url, declared, policy))
                    chunks: list[bytes] = []
                    size = 0
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if size > policy.max_bytes:
                            raise InputTooLarge(_too_large(url, size, policy, at_least=True))
                        if time.monotonic() > deadline:
                            raise InputUnreadable(f"fetching {url} took longer than {policy.timeout_sec:g} s")
                        chunks.append(chunk)
                    return Fetched(b"".join(chunks), response.headers.get("content-type", ""), current)
            except httpx.TimeoutException:
                raise InputUnreadable(f"fetching {url} timed out after {policy.timeout_sec:g} s") from None
            except httpx.HTTPError as exc:
                raise InputUnreadable(f"fetching {url} failed: {type(exc).__name__}: {exc}") from None
    raise InputUnreadable(f"fetching {url} failed: more than {policy.max_redirects} redirects")


def _too_large(url: str, size: int, policy: FetchPolicy, at_least: bool = False) -> str:
    more = "more than " if at_least else ""
    return (
        f"{url} is {more}{size:,} bytes; the limit is {policy.max_bytes:,} bytes (OMNIEMBED_FETCH_MAX_BYTES)"
    )
