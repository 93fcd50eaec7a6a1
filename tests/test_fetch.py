"""The guarded URL fetcher: SSRF guard, status errors, timeouts, size caps, redirects."""

from __future__ import annotations

import time

import pytest

from conftest import LoopbackServer
from omniembed import InputTooLarge, InputUnreadable, ParameterInvalid, Settings
from omniembed.inputs.fetch import FetchPolicy, fetch, forbidden_reason, is_url

OPEN = FetchPolicy(timeout_sec=2, max_bytes=1000, max_redirects=2, allow_private=True)  # loopback allowed


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.10", "private"),
        ("172.16.5.4", "private"), ("169.254.169.254", "metadata"), ("169.254.10.1", "link-local"),
        ("fe80::1", "link-local"), ("::ffff:127.0.0.1", "loopback"), ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"), ("100.64.1.1", "carrier-grade"), ("fd00:ec2::254", "metadata"),
    ],
)
def test_forbidden_addresses(address: str, reason: str) -> None:
    assert reason in (forbidden_reason(address) or "")


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_reason(address) is None


def test_loopback_url_refused_by_default_without_any_request(http_server: LoopbackServer) -> None:
    http_server.routes["/x"] = (200, {}, b"secret")
    policy = FetchPolicy.from_settings(Settings())
    for url in (http_server.url("/x"), http_server.url("/x").replace("127.0.0.1", "localhost")):
        with pytest.raises(ParameterInvalid) as info:
            fetch(url, policy)
        assert "loopback" in info.value.message and "OMNIEMBED_ALLOW_PRIVATE_URLS" in info.value.message
    assert http_server.hits == []


def test_redirect_to_a_private_target_is_refused(http_server: LoopbackServer) -> None:
    """Each hop is checked: a redirect cannot be used to reach an internal address."""
    from unittest.mock import patch

    http_server.routes["/hop"] = (302, {"Location": http_server.url("/x")}, b"")
    # Pretend 127.0.0.1 is public for the first hop only, so the redirect target is what gets refused.
    import omniembed.inputs.fetch as f

    real = f.forbidden_reason
    calls: list[str] = []

    def first_hop_public(address: str) -> str | None:
        calls.append(address)
        return None if len(calls) == 1 else real(address)

    with patch.object(f, "forbidden_reason", first_hop_public), pytest.raises(ParameterInvalid, match="loopback"):
        fetch(http_server.url("/hop"), FetchPolicy(timeout_sec=2))
    assert http_server.hits == ["/hop"]


def test_ok_and_redirects(http_server: LoopbackServer) -> None:
    http_server.routes["/a"] = (200, {"Content-Type": "image/png"}, b"abc")
    http_server.routes["/r1"] = (301, {"Location": "/a"}, b"")
    got = fetch(http_server.url("/r1"), OPEN)
    assert (got.content, got.content_type, got.url) == (b"abc", "image/png", http_server.url("/a"))
    http_server.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    with pytest.raises(InputUnreadable, match="redirects"):
        fetch(http_server.url("/loop"), OPEN)


def test_server_error_is_unreadable(http_server: LoopbackServer) -> None:
    http_server.routes["/boom"] = (500, {}, b"oops")
    with pytest.raises(InputUnreadable, match="HTTP 500"):
        fetch(http_server.url("/boom"), OPEN)
    with pytest.raises(InputUnreadable, match="HTTP 404"):
        fetch(http_server.url("/missing"), OPEN)


def test_a_server_that_never_answers_is_bounded_by_the_timeout(http_server: LoopbackServer) -> None:
    http_server.routes["/hang"] = (0, {}, None)
    started = time.monotonic()
    with pytest.raises(InputUnreadable, match="timed out"):
        fetch(http_server.url("/hang"), FetchPolicy(timeout_sec=0.5, allow_private=True))
    assert time.monotonic() - started < 5


def test_size_cap_declared_and_streamed(http_server: LoopbackServer) -> None:
    http_server.routes["/big"] = (200, {}, b"x" * 5000)
    with pytest.raises(InputTooLarge, match="5,000 bytes"):
        fetch(http_server.url("/big"), OPEN)
    http_server.routes["/liar"] = (200, {"Content-Length": "10"}, b"y" * 5000)  # understates its size
    got = fetch(http_server.url("/liar"), OPEN)
    assert len(got.content) <= 10  # the client stops at the declared length; never reads past the cap


def test_bad_urls() -> None:
    with pytest.raises(ParameterInvalid, match="scheme"):
        fetch("ftp://example.org/x.png", OPEN)
    with pytest.raises(ParameterInvalid, match="no host"):
        fetch("http:///x.png", OPEN)
    for bad in ("http://[::1/x.png", "http://example.org:99999/x.png"):  # malformed: a clear error, not a crash
        with pytest.raises(ParameterInvalid):
            fetch(bad, OPEN)
    assert is_url("HTTPS://x.org/a") and not is_url("/tmp/a.png") and not is_url(b"http://x")
