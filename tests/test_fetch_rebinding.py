"""DNS rebinding: the fetcher connects to exactly the address it checked (pinned), once per hop, and keeps
the URL's host name for the Host header, SNI and the certificate check."""

from __future__ import annotations

import datetime
import http.server
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from omniembed import InputUnreadable, ParameterInvalid
from omniembed.inputs.fetch import FetchPolicy, fetch

PUBLIC = "93.184.215.14"  # a public address; nothing here ever connects to it (see `connects`)
STRICT = FetchPolicy(timeout_sec=2, max_bytes=10_000, max_redirects=2)
OPEN = FetchPolicy(timeout_sec=2, max_bytes=10_000, max_redirects=2, allow_private=True)


class Recorder(http.server.ThreadingHTTPServer):
    """A loopback HTTP(S) server that records each request's path and Host header."""

    daemon_threads = True

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.seen: list[tuple[str, str]] = []
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.seen.append((self.path, self.headers.get("Host", "")))
                status, headers, body = recorder.routes.get(self.path, (404, {}, b"not found"))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        if context is not None:
            self.socket = context.wrap_socket(self.socket, server_side=True)
        self.port = int(self.server_address[1])
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a refused TLS handshake is part of a test

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def server() -> Iterator[Recorder]:
    srv = Recorder()
    yield srv
    srv.close()


class FakeDns:
    """``socket.getaddrinfo`` for names under ``.test``: each name answers from its list of answers in
    turn (the last one repeats); every other name goes to the real resolver. Connections are recorded,
    and connecting to ``PUBLIC`` is refused at once, so no test touches the network."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.queries: list[str] = []
        self.connects: list[tuple[str, int]] = []
        real_getaddrinfo: Callable[..., Any] = socket.getaddrinfo
        real_connect: Callable[..., Any] = socket.create_connection

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode() if isinstance(host, bytes) else str(host)
            if not name.endswith(".test"):
                return real_getaddrinfo(host, port, *args, **kwargs)
            self.queries.append(name)
            queue = self.answers[name]
            addresses = queue.pop(0) if len(queue) > 1 else queue[0]
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                     (a, int(port or 0))) for a in addresses]

        def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
            self.connects.append((str(address[0]), int(address[1])))
            if address[0] == PUBLIC:
                raise ConnectionRefusedError(111, "refused by the test (no network)")
            sock: socket.socket = real_connect(address, *args, **kwargs)
            return sock

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket, "create_connection", create_connection)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    return FakeDns(monkeypatch)


def test_a_rebinding_resolver_cannot_reach_loopback(server: Recorder, dns: FakeDns) -> None:
    """Public to the check, loopback to a second lookup: there is no second lookup. The fetcher connects
    to the public address it checked (refused here), never to the loopback server."""
    server.routes["/secret"] = (200, {}, b"s" * 30_000)
    dns.answers["rebind.test"] = [[PUBLIC], ["127.0.0.1"]]
    with pytest.raises(InputUnreadable, match="cannot connect"):
        fetch(f"http://rebind.test:{server.port}/secret", STRICT)
    assert server.seen == []
    assert dns.queries == ["rebind.test"]  # resolved once
    assert dns.connects == [(PUBLIC, server.port)]  # and connected to the checked address only


def test_a_name_with_any_private_address_is_refused_without_connecting(server: Recorder, dns: FakeDns) -> None:
    dns.answers["mixed.test"] = [[PUBLIC, "127.0.0.1"]]
    with pytest.raises(ParameterInvalid, match="loopback"):
        fetch(f"http://mixed.test:{server.port}/x", STRICT)
    assert dns.connects == [] and server.seen == []


def test_allowed_loopback_fetch_keeps_the_host_header(server: Recorder, dns: FakeDns) -> None:
    server.routes["/x"] = (200, {"Content-Type": "text/plain"}, b"hello")
    dns.answers["named.test"] = [["127.0.0.1"]]
    got = fetch(f"http://named.test:{server.port}/x", OPEN)
    assert (got.content, got.url) == (b"hello", f"http://named.test:{server.port}/x")
    assert server.seen == [("/x", f"named.test:{server.port}")]
    assert dns.connects == [("127.0.0.1", server.port)]
    got = fetch(f"http://127.0.0.1:{server.port}/x", OPEN)  # an IP literal works the same way
    assert got.content == b"hello" and server.seen[-1] == ("/x", f"127.0.0.1:{server.port}")


def test_each_redirect_hop_is_resolved_checked_and_pinned_again(server: Recorder, dns: FakeDns) -> None:
    server.routes["/hop"] = (302, {"Location": f"http://b.test:{server.port}/x"}, b"")
    server.routes["/x"] = (200, {}, b"done")
    dns.answers["a.test"] = [["127.0.0.1"]]
    dns.answers["b.test"] = [["127.0.0.1"]]
    got = fetch(f"http://a.test:{server.port}/hop", OPEN)
    assert got.content == b"done" and got.url == f"http://b.test:{server.port}/x"
    assert dns.queries == ["a.test", "b.test"]
    assert server.seen == [("/hop", f"a.test:{server.port}"), ("/x", f"b.test:{server.port}")]


def test_an_address_that_refuses_falls_back_to_the_next_checked_one(server: Recorder, dns: FakeDns) -> None:
    server.routes["/x"] = (200, {}, b"ok")
    dns.answers["two.test"] = [["127.0.0.2", "127.0.0.1"]]  # the server listens on 127.0.0.1 only
    assert fetch(f"http://two.test:{server.port}/x", OPEN).content == b"ok"
    assert [a for a, _ in dns.connects] == ["127.0.0.2", "127.0.0.1"]
    assert dns.queries == ["two.test"]


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate (its own CA) for ``name``: (cert file, key file)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_https_is_pinned_with_sni_and_the_certificate_checked_against_the_host_name(
    tmp_path: Path, dns: FakeDns, monkeypatch: pytest.MonkeyPatch
) -> None:
    import certifi

    cert_file, key_file = _self_signed(tmp_path, "pinned.test")
    monkeypatch.setattr(certifi, "where", lambda: str(cert_file))  # the fetcher's client trusts this one cert
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    sni: list[str | None] = []
    context.sni_callback = lambda _sock, name, _ctx: sni.append(name)
    srv = Recorder(context)
    try:
        srv.routes["/x"] = (200, {}, b"tls")
        dns.answers["pinned.test"] = [["127.0.0.1"]]
        dns.answers["other.test"] = [["127.0.0.1"]]
        assert fetch(f"https://pinned.test:{srv.port}/x", OPEN).content == b"tls"
        assert sni == ["pinned.test"] and srv.seen == [("/x", f"pinned.test:{srv.port}")]
        assert dns.connects == [("127.0.0.1", srv.port)]
        # Same address, another name: the certificate is checked against the name, not the IP.
        with pytest.raises(InputUnreadable, match=r"(?i)certificate"):
            fetch(f"https://other.test:{srv.port}/x", OPEN)
        assert sni[-1] == "other.test" and len(srv.seen) == 1
    finally:
        srv.close()
