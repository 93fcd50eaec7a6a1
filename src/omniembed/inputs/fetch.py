"""The one guarded URL fetcher every input loader uses (images, audio, later rasters).

Guards, all from settings: http(s) only; a connect/read timeout and an overall deadline (a server that
drips bytes cannot hold a worker); a byte cap checked against Content-Length and while streaming;
at most N redirects, each hop checked again; and a server-side request forgery guard that refuses
hosts resolving to private, loopback, link-local, multicast, reserved or cloud-metadata addresses
unless ``allow_private_urls`` is set.

Each hop is connected to exactly the address that was checked (pinned): the host is resolved once, every
address it resolves to is checked, and the request goes to that IP with the original ``Host`` header and,
for https, the original name for SNI and certificate verification. A DNS server that answers a public
address to the check and a private one to the connect (rebinding) therefore gains nothing: there is no
second resolution. Clients other than ``fetch`` (GDAL, pystac-client) resolve on their own after
``check_url``; deployments that need more should also restrict egress at the network level.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from omniembed.errors import InputTooLarge, InputUnreadable, ParameterInvalid
from omniembed.settings import Settings

if TYPE_CHECKING:
    import httpx

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


def _resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, in the resolver's order of preference, without repeats."""
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _checked_parts(url: str) -> tuple[str, str]:
    """The URL's scheme and host, or ParameterInvalid for what can never be fetched."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises for a port that is not a number in 0..65535
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket, port 99999
        raise ParameterInvalid(f"invalid URL {url}: {exc}") from None
    if parts.scheme.lower() not in {"http", "https"}:
        raise ParameterInvalid(f"only http and https URLs can be fetched, not {parts.scheme or 'no'} scheme: {url}")
    if not host:
        raise ParameterInvalid(f"the URL has no host: {url}")
    return parts.scheme.lower(), host


def _checked_addresses(url: str, host: str, port: int, policy: FetchPolicy) -> list[str]:
    """Resolve ``host`` once and check every address (unless the policy allows private targets)."""
    try:
        addresses = _resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise InputUnreadable(f"cannot resolve the host of {url}: {exc}") from None
    if not addresses:
        raise InputUnreadable(f"cannot resolve the host of {url}: no address")
    if not policy.allow_private:
        for address in addresses:
            reason = forbidden_reason(address)
            if reason is not None:
                raise ParameterInvalid(
                    f"the URL {url} resolves to {address}, {reason}; fetching it is refused. "
                    "Set OMNIEMBED_ALLOW_PRIVATE_URLS=1 to allow private targets on a trusted network."
                )
    return addresses


def check_url(url: str, policy: FetchPolicy) -> None:
    """Refuse non-http(s) URLs and, unless the policy allows private targets, hosts that resolve to a
    forbidden address (for clients other than ``fetch``, e.g. GDAL or pystac-client)."""
    scheme, host = _checked_parts(url)
    if policy.allow_private:
        return
    port = urlsplit(url).port or (443 if scheme == "https" else 80)
    _checked_addresses(url, host, port, policy)


def _pinned_requests(client: httpx.Client, url: str, policy: FetchPolicy) -> Iterator[httpx.Request]:
    """One GET request per checked address of ``url``'s host (in preference order): the connection goes
    to that IP, while the Host header, SNI and certificate check keep the URL's own host name."""
    import httpx

    _checked_parts(url)
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ParameterInvalid(f"invalid URL {url}: {exc}") from None
    if target.scheme not in {"http", "https"} or not target.raw_host:
        raise ParameterInvalid(f"only http and https URLs with a host can be fetched: {url}")
    host = target.raw_host.decode("ascii")  # IDNA-encoded: what DNS, Host and SNI all use
    port = target.port or (443 if target.scheme == "https" else 80)
    headers = {"Host": target.netloc.decode("ascii"), "User-Agent": "omniembed"}
    for address in _checked_addresses(url, host, port, policy):
        if "%" in address:  # a scoped IPv6 address (fe80::1%eth0) cannot be written in a URL
            continue
        yield client.build_request(
            "GET", target.copy_with(host=address), headers=headers, extensions={"sni_hostname": host}
        )


def _send_pinned(client: httpx.Client, url: str, policy: FetchPolicy, deadline: float) -> httpx.Response:
    """The streamed response from the first checked address that accepts the connection."""
    import httpx

    failure: Exception | None = None
    for request in _pinned_requests(client, url, policy):
        if failure is not None and time.monotonic() > deadline:
            break
        try:
            return client.send(request, stream=True)
        except httpx.ConnectError as exc:  # refused or unreachable: the next address, as a resolver's client would
            failure = exc
    detail = f"{type(failure).__name__}: {failure}" if failure is not None else "no usable address"
    raise InputUnreadable(f"fetching {url} failed: cannot connect ({detail})")


def fetch(url: str, policy: FetchPolicy) -> Fetched:
    """GET ``url`` under ``policy``; InputUnreadable / InputTooLarge / ParameterInvalid on failure.

    Every hop (the URL, then each redirect) is resolved once, checked and connected to at the checked
    address, so the address that was checked is the one that is reached.
    """
    import httpx

    deadline = time.monotonic() + policy.timeout_sec
    timeout = httpx.Timeout(policy.timeout_sec)
    # No connection is kept: each one was opened for one host name's checked address and serves that hop only.
    limits = httpx.Limits(max_keepalive_connections=0)
    current = url
    with httpx.Client(follow_redirects=False, timeout=timeout, trust_env=False, limits=limits) as client:
        for _hop in range(policy.max_redirects + 1):
            try:
                response = _send_pinned(client, current, policy, deadline)
                try:
                    if response.is_redirect:
                        current = urljoin(current, response.headers.get("location", ""))
                        continue
                    return _read(response, url, current, policy, deadline)
                finally:
                    response.close()
            except httpx.TimeoutException:
                raise InputUnreadable(f"fetching {url} timed out after {policy.timeout_sec:g} s") from None
            except httpx.HTTPError as exc:
                raise InputUnreadable(f"fetching {url} failed: {type(exc).__name__}: {exc}") from None
    raise InputUnreadable(f"fetching {url} failed: more than {policy.max_redirects} redirects")


def _read(response: httpx.Response, url: str, current: str, policy: FetchPolicy, deadline: float) -> Fetched:
    if response.status_code >= 400:
        raise InputUnreadable(f"fetching {url} failed: the server answered HTTP {response.status_code}")
    length = response.headers.get("content-length", "")
    declared = int(length) if length.isdigit() else 0
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


def _too_large(url: str, size: int, policy: FetchPolicy, at_least: bool = False) -> str:
    more = "more than " if at_least else ""
    return (
        f"{url} is {more}{size:,} bytes; the limit is {policy.max_bytes:,} bytes (OMNIEMBED_FETCH_MAX_BYTES)"
    )
