"""Local HTTPS (and plain HTTP) test apps for the smoke-test function's integration
tests: one small web app served behind certificates that are valid, about to expire,
expired, issued for another host and self-signed, plus two plain-HTTP "environments".

Usage (from the repository root):

    .venv/bin/python tests/local/https_apps.py --dir DIR [--exit-with-parent]

Files written to DIR (created if missing; existing files are overwritten):

    ca.pem, ca-bundle.pem        the private CA's certificate (the same PEM in both)
    <kind>.pem, <kind>-key.pem   each server's certificate and its key, for the kinds
                                 valid, expiring, expired, wrong-host, self-signed
    https_apps.log               the launcher's log: one line per request, failed TLS
                                 handshakes, errors (nothing is logged to stdout)

Certificates (EC P-256 keys, SHA-256 signatures; "now" is the launcher's start):

    CA            self-signed CA, now-1d .. now+3650d (its key is never written)
    valid         from the CA, SAN DNS:localhost IP:127.0.0.1, now-1d .. now+365d
    expiring      from the CA, same SANs, now-1d .. now+5d
    expired       from the CA, same SANs, now-30d .. now-1d
    wrong-host    from the CA, SAN DNS:wrong.example only, now-1d .. now+365d
    self-signed   self-signed, not a CA, SAN DNS:localhost IP:127.0.0.1, now-1d .. now+365d

Servers (all on 127.0.0.1, ports chosen at run time): one HTTPS server per certificate
kind above, presenting that certificate, and two plain-HTTP servers, `production` and
`staging`. Once every server listens the launcher prints exactly one line of JSON to
stdout, and flushes it (shown wrapped here):

    {"ready": true, "ca_bundle": "<DIR>/ca-bundle.pem",
     "self_signed_cert": "<DIR>/self-signed.pem",
     "urls": {"valid": "https://127.0.0.1:<port>", "expiring": "https://127.0.0.1:<port>",
              "expired": "https://127.0.0.1:<port>", "wrong-host": "https://127.0.0.1:<port>",
              "self-signed": "https://127.0.0.1:<port>", "production": "http://127.0.0.1:<port>",
              "staging": "http://127.0.0.1:<port>"},
     "pid": <pid>}

Paths are absolute. Nothing else is ever printed on stdout. The launcher then runs
until SIGTERM or SIGINT, when it shuts every server down and exits 0; with
`--exit-with-parent` it also exits (0) once its parent process dies (checked every
0.5 s), so a test harness killed with SIGKILL leaves nothing behind.

Every server serves the same app (HTTP/1.0, one request per connection; JSON bodies
come with `Content-Type: application/json`). V is "1.4.2"; E is "production" on the
`production` server and "staging" on every other one.

    GET  /health[?version=X]  200 {"status": "ok", "version": V, "environment": E}, with
                              headers X-App-Version: V and X-Environment: E; `version`
                              replaces V in this response (body and header)
    POST /login               body {"user": ..., "password": ...}: both non-empty strings
                              -> 200 {"token": "t-<16 hex digits>", "user": <user>};
                              anything else (not JSON too) -> 401 {"error": "bad credentials"}
    GET  /slow?ms=N           sleeps N ms (an integer, 0 .. 600000), then 200 {"slept_ms": N}
    GET  /flaky?for=S         503 with the text/plain body `warming up` while fewer than S
                              seconds (a float; default 0) have passed since this server
                              started or was last reset, then 200 {"status": "ok"}
    POST /flaky/reset         200 {"reset": true}: restarts this server's /flaky clock
    POST /version             {"version": X}: this server's /health answers version X from now on
    POST /run-migrations      200 {"migrations": N}: counts one more migration run on this server
                              (seed 002's endpoint); GET /migrations answers {"migrations": N}
    GET  /api/items           200 {"items": [1, 2, 3]} if the request header `x-api-key` is
                              `k3y-s3cr3t-value`, else 403 {"error": "forbidden"}
    anything else             404 {"error": "not found"} (a bad `ms` or `for`: 400)
"""

from __future__ import annotations

import os

# Read before the slower imports below, so that a parent dying meanwhile is noticed.
PARENT_PID = os.getppid()

import argparse  # noqa: E402
import datetime  # noqa: E402
import ipaddress  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import secrets  # noqa: E402
import signal  # noqa: E402
import ssl  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402
from urllib.parse import parse_qs, urlsplit  # noqa: E402

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

HOST = "127.0.0.1"
VERSION = "1.4.2"
API_KEY = "k3y-s3cr3t-value"
MAX_SLEEP_MS = 600_000
MAX_BODY_BYTES = 1 << 20
DAY = datetime.timedelta(days=1)
LOCAL_NAMES = ("localhost",)
LOCAL_IPS = ("127.0.0.1",)


@dataclass(frozen=True)
class LeafSpec:
    """One HTTPS server's certificate: its SANs and validity, in days from now."""

    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    not_before_days: int
    not_after_days: int
    self_signed: bool = False


# The HTTPS servers, in the ready line's order; each serves E="staging".
LEAVES: dict[str, LeafSpec] = {
    "valid": LeafSpec(LOCAL_NAMES, LOCAL_IPS, -1, 365),
    "expiring": LeafSpec(LOCAL_NAMES, LOCAL_IPS, -1, 5),
    "expired": LeafSpec(LOCAL_NAMES, LOCAL_IPS, -30, -1),
    "wrong-host": LeafSpec(("wrong.example",), (), -1, 365),
    "self-signed": LeafSpec(LOCAL_NAMES, LOCAL_IPS, -1, 365, self_signed=True),
}
# The plain-HTTP servers, each serving its own name as E.
PLAIN_SERVERS = ("production", "staging")


# --- certificates -----------------------------------------------------------------


@dataclass(frozen=True)
class Issuer:
    """A certificate and the key that signs with it."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Certificates:
    """The files written to the directory."""

    ca_bundle: Path
    leaves: dict[str, tuple[Path, Path]]  # kind -> (certificate, key)


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "understudy tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _key_usage(*, digital_signature: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
        encipher_only=False, decipher_only=False,
    )


def make_ca(now: datetime.datetime) -> Issuer:
    """The private CA: may sign leaves only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("understudy test CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + 3650 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issuer(cert, key)


def make_leaf(spec: LeafSpec, ca: Issuer, now: datetime.datetime) -> Issuer:
    """A server certificate, issued by `ca` unless the spec says self-signed. The
    self-signed one has no KeyUsage extension, so that OpenSSL still counts it as
    self-signed (a KeyUsage without keyCertSign would not) and trusts it as its own anchor."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(spec.dns_names[0])
    issuer = None if spec.self_signed else ca
    issuer_name = subject if issuer is None else issuer.cert.subject
    signing_key = key if issuer is None else issuer.key
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in spec.dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(address)) for address in spec.ip_addresses]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + spec.not_before_days * DAY)
        .not_valid_after(now + spec.not_after_days * DAY)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), critical=False
        )
    )
    if issuer is not None:
        builder = builder.add_extension(_key_usage(digital_signature=True), critical=True)
    return Issuer(builder.sign(signing_key, hashes.SHA256()), key)


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(pem)


def write_certificates(directory: Path) -> Certificates:
    """Generates the CA and every leaf; writes them to `directory` (see the module doc)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca = make_ca(now)
    ca_pem = _cert_pem(ca.cert)
    (directory / "ca.pem").write_bytes(ca_pem)
    (directory / "ca-bundle.pem").write_bytes(ca_pem)
    leaves = {}
    for kind, spec in LEAVES.items():
        leaf = make_leaf(spec, ca, now)
        cert_path, key_path = directory / f"{kind}.pem", directory / f"{kind}-key.pem"
        cert_path.write_bytes(_cert_pem(leaf.cert))
        _write_key(key_path, leaf.key)
        leaves[kind] = (cert_path, key_path)
    return Certificates(directory / "ca-bundle.pem", leaves)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


# --- the app ----------------------------------------------------------------------


class BadRequest(Exception):
    """A malformed query parameter: answered 400 with this message."""


class AppServer(ThreadingHTTPServer):
    """One app server: plain HTTP, or HTTPS when given a TLS context. The TLS handshake
    runs in the request's own thread, so a stalled or failing client blocks nobody."""

    daemon_threads = True  # a sleeping /slow request never holds up shutdown

    def __init__(self, name: str, environment: str, tls: ssl.SSLContext | None = None) -> None:
        super().__init__((HOST, 0), AppHandler)
        self.name = name
        self.environment = environment
        self.version = VERSION  # what /health answers; POST /version changes it
        self.migrations = 0  # POST /run-migrations counts
        self.tls = tls
        self._clock_lock = threading.Lock()
        self._started = time.monotonic()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.server_port}"

    def uptime(self) -> float:
        """Seconds since the server started, or since its clock was last reset."""
        with self._clock_lock:
            return time.monotonic() - self._started

    def reset_clock(self) -> None:
        with self._clock_lock:
            self._started = time.monotonic()

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(10)
        try:
            tls_request = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as error:  # e.g. the client rejected the certificate
            logging.info("%s %s - TLS handshake failed: %s", self.name, client_address[0], error)
            return
        try:
            super().finish_request(tls_request, client_address)
        finally:
            tls_request.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logging.exception("%s %s - error serving the request", self.name, client_address[0])


Route = Callable[["AppHandler", dict[str, str], bytes], None]


class AppHandler(BaseHTTPRequestHandler):
    """The routes of the module doc. Every method goes through _dispatch, so unknown
    methods are 404s like unknown paths."""

    server: AppServer
    server_version = "understudy-https-apps/1"

    def _dispatch(self) -> None:
        body = self._read_body()
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        route = self.routes.get((self.command, url.path))
        if route is None:
            self._send_json(404, {"error": "not found"})
            return
        try:
            route(self, query, body)
        except BadRequest as error:
            self._send_json(400, {"error": str(error)})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = 0
        return self.rfile.read(min(length, MAX_BODY_BYTES)) if length > 0 else b""

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, document: object, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(document).encode(), "application/json", headers)

    def health(self, query: dict[str, str], body: bytes) -> None:
        version, environment = query.get("version", self.server.version), self.server.environment
        self._send_json(
            200, {"status": "ok", "version": version, "environment": environment},
            {"X-App-Version": version, "X-Environment": environment},
        )

    def login(self, query: dict[str, str], body: bytes) -> None:
        try:
            credentials = json.loads(body)
        except ValueError:
            credentials = None
        user = credentials.get("user") if isinstance(credentials, dict) else None
        password = credentials.get("password") if isinstance(credentials, dict) else None
        if isinstance(user, str) and user and isinstance(password, str) and password:
            self._send_json(200, {"token": f"t-{secrets.token_hex(8)}", "user": user})
        else:
            self._send_json(401, {"error": "bad credentials"})

    def slow(self, query: dict[str, str], body: bytes) -> None:
        try:
            ms = int(query.get("ms", "0"))
        except ValueError:
            raise BadRequest("ms must be an integer") from None
        if not 0 <= ms <= MAX_SLEEP_MS:
            raise BadRequest(f"ms must be between 0 and {MAX_SLEEP_MS}")
        time.sleep(ms / 1000)
        self._send_json(200, {"slept_ms": ms})

    def flaky(self, query: dict[str, str], body: bytes) -> None:
        try:
            seconds = float(query.get("for", "0"))
        except ValueError:
            raise BadRequest("for must be a number of seconds") from None
        if not math.isfinite(seconds) or seconds < 0:
            raise BadRequest("for must be a non-negative number of seconds")
        if self.server.uptime() < seconds:
            self._send(503, b"warming up", "text/plain; charset=utf-8")
        else:
            self._send_json(200, {"status": "ok"})

    def set_version(self, query: dict[str, str], body: bytes) -> None:
        try:
            version = json.loads(body).get("version")
        except (ValueError, AttributeError):
            version = None
        if not isinstance(version, str) or not version:
            raise BadRequest('POST {"version": "1.5.0"}')
        self.server.version = version
        self._send_json(200, {"version": version})

    def run_migrations(self, query: dict[str, str], body: bytes) -> None:
        with self.server._clock_lock:
            self.server.migrations += 1
            count = self.server.migrations
        self._send_json(200, {"migrations": count})

    def migrations(self, query: dict[str, str], body: bytes) -> None:
        self._send_json(200, {"migrations": self.server.migrations})

    def flaky_reset(self, query: dict[str, str], body: bytes) -> None:
        self.server.reset_clock()
        self._send_json(200, {"reset": True})

    def items(self, query: dict[str, str], body: bytes) -> None:
        if self.headers.get("x-api-key") == API_KEY:
            self._send_json(200, {"items": [1, 2, 3]})
        else:
            self._send_json(403, {"error": "forbidden"})

    routes: dict[tuple[str, str], Route] = {
        ("GET", "/health"): health,
        ("POST", "/login"): login,
        ("GET", "/slow"): slow,
        ("GET", "/flaky"): flaky,
        ("POST", "/flaky/reset"): flaky_reset,
        ("POST", "/version"): set_version,
        ("POST", "/run-migrations"): run_migrations,
        ("GET", "/migrations"): migrations,
        ("GET", "/api/items"): items,
    }

    def log_message(self, format: str, *args: Any) -> None:
        logging.info("%s %s - %s", self.server.name, self.address_string(), format % args)


# --- the launcher -----------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True,
                        help="where certificates, keys and the log are written")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="exit once the parent process is gone")
    return parser.parse_args(argv)


def start_servers(certificates: Certificates) -> list[AppServer]:
    servers = [
        AppServer(kind, "staging", server_context(*certificates.leaves[kind])) for kind in LEAVES
    ]
    servers += [AppServer(name, name) for name in PLAIN_SERVERS]
    for server in servers:
        threading.Thread(target=server.serve_forever, name=server.name, daemon=True).start()
    return servers


def stop_servers(servers: list[AppServer]) -> None:
    """Shuts every server down at once (each shutdown waits up to a poll interval)."""
    stoppers = [threading.Thread(target=server.shutdown) for server in servers]
    for stopper in stoppers:
        stopper.start()
    for stopper in stoppers:
        stopper.join()
    for server in servers:
        server.server_close()


def ready_line(certificates: Certificates, servers: list[AppServer]) -> str:
    return json.dumps({
        "ready": True,
        "ca_bundle": str(certificates.ca_bundle),
        "self_signed_cert": str(certificates.leaves["self-signed"][0]),
        "urls": {server.name: server.url for server in servers},
        "pid": os.getpid(),
    })


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    directory = args.dir.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=directory / "https_apps.log",
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(threadName)s: %(message)s",
    )
    certificates = write_certificates(directory)
    servers = start_servers(certificates)
    print(ready_line(certificates, servers), flush=True)
    logging.info("ready: %s", ", ".join(f"{server.name} {server.url}" for server in servers))

    while not stop.wait(0.5):
        if args.exit_with_parent and os.getppid() != PARENT_PID:
            logging.info("parent %d is gone", PARENT_PID)
            break
    logging.info("shutting down")
    stop_servers(servers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
