"""Self-test of the HTTPS test apps launcher (https_apps.py): its certificates, as seen
by Python's ssl (OpenSSL), its routes, and how it ends.

    .venv/bin/python -m unittest discover -s tests/local -p 'test_*.py'
"""

from __future__ import annotations

import datetime
import json
import os
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from cryptography import x509

from processes import gone

HERE = Path(__file__).resolve().parent
LAUNCHER = HERE / "https_apps.py"
READY_TIMEOUT = 30
HTTPS_KINDS = ("valid", "expiring", "expired", "wrong-host", "self-signed")
PLAIN_KINDS = ("production", "staging")

# X509_V_ERR_* codes, as in SSLCertVerificationError.verify_code.
CERT_HAS_EXPIRED = 10
HOSTNAME_MISMATCH = 62
IP_ADDRESS_MISMATCH = 64

# A parent for the --exit-with-parent test: starts the launcher (its stdout is ours),
# then lives until the test closes its stdin.
PARENT_SCRIPT = "import subprocess, sys; subprocess.Popen(sys.argv[1:]); sys.stdin.read()"


def launcher_command(directory: Path, *extra: str) -> list[str]:
    return [sys.executable, str(LAUNCHER), "--dir", str(directory), *extra]


def read_ready_line(stream: IO[str], timeout: float = READY_TIMEOUT) -> dict[str, Any]:
    """The launcher's ready line, parsed; fails after `timeout` seconds or at EOF."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no ready line within {timeout} s") from None
    if not line:
        raise AssertionError("the launcher ended before it was ready")
    return json.loads(line)




def wait_until_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def kill(process: subprocess.Popen[str]) -> None:
    """SIGKILLs a child by its pid unless it has already been reaped, then reaps it."""
    if process.poll() is None:
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=10)
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()


def kill_pid(pid: int) -> None:
    """SIGKILLs a process that is not our child (nobody here reaps it) if still running."""
    if not gone(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None, url
    return parts.hostname, parts.port


def trusting(cafile: str) -> ssl.SSLContext:
    """A client context verifying certificates and host names against `cafile` alone."""
    return ssl.create_default_context(cafile=cafile)


def handshake(url: str, context: ssl.SSLContext, server_hostname: str | None = None) -> None:
    """A TLS handshake with the server at `url`, checking `server_hostname` (by
    default the URL's host, an IP address)."""
    host, port = address(url)
    with socket.create_connection((host, port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_hostname or host):
            pass


def fetch(
    url: str, method: str = "GET", body: object = None, headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, Message, bytes]:
    """One request, without proxies; HTTP errors are answers too."""
    data = None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


class HttpsAppsTest(unittest.TestCase):
    """One launcher for the class; killed (by pid) however the class ends."""

    tmp: Path
    process: subprocess.Popen[str]
    ready: dict[str, Any]
    urls: dict[str, str]

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = Path(tempfile.mkdtemp(prefix="understudy-https-apps-test-"))
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        cls.process = subprocess.Popen(launcher_command(cls.tmp), stdout=subprocess.PIPE, text=True)
        cls.addClassCleanup(kill, cls.process)
        cls.ready = read_ready_line(cls.process.stdout)
        cls.urls = cls.ready["urls"]

    def get_json(self, url: str, **kwargs: Any) -> tuple[int, Message, Any]:
        """fetch(), asserting a JSON answer, which it parses."""
        status, headers, body = fetch(url, **kwargs)
        self.assertEqual(headers["Content-Type"], "application/json", body)
        return status, headers, json.loads(body)

    def answer(self, url: str, **kwargs: Any) -> tuple[int, Any]:
        """get_json()'s status and document."""
        status, _, document = self.get_json(url, **kwargs)
        return status, document

    def test_ready_line(self) -> None:
        self.assertEqual(list(self.ready), ["ready", "ca_bundle", "self_signed_cert", "urls", "pid"])
        self.assertIs(self.ready["ready"], True)
        self.assertEqual(self.ready["pid"], self.process.pid)
        self.assertEqual(list(self.urls), [*HTTPS_KINDS, *PLAIN_KINDS])
        for kind in HTTPS_KINDS:
            self.assertRegex(self.urls[kind], r"^https://127\.0\.0\.1:\d+$")
        for kind in PLAIN_KINDS:
            self.assertRegex(self.urls[kind], r"^http://127\.0\.0\.1:\d+$")
        self.assertEqual(len({address(url)[1] for url in self.urls.values()}), len(self.urls))
        ca_bundle, self_signed = Path(self.ready["ca_bundle"]), Path(self.ready["self_signed_cert"])
        self.assertTrue(ca_bundle.is_absolute() and self_signed.is_absolute())
        self.assertEqual(ca_bundle.read_bytes(), (self.tmp / "ca.pem").read_bytes())
        self.assertTrue(self_signed.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----"))

    def test_valid_verifies_against_the_ca_bundle(self) -> None:
        status, body = self.answer(f"{self.urls['valid']}/health", context=trusting(self.ready["ca_bundle"]))
        self.assertEqual((status, body["environment"]), (200, "staging"))

    def test_expired_fails_verification(self) -> None:
        with self.assertRaises(ssl.SSLCertVerificationError) as caught:
            handshake(self.urls["expired"], trusting(self.ready["ca_bundle"]))
        self.assertEqual(caught.exception.verify_code, CERT_HAS_EXPIRED, caught.exception)

    def test_wrong_host_fails_hostname_verification_only(self) -> None:
        for server_hostname, code in (("127.0.0.1", IP_ADDRESS_MISMATCH), ("localhost", HOSTNAME_MISMATCH)):
            with self.subTest(server_hostname), self.assertRaises(ssl.SSLCertVerificationError) as caught:
                handshake(self.urls["wrong-host"], trusting(self.ready["ca_bundle"]), server_hostname)
            self.assertEqual(caught.exception.verify_code, code, caught.exception)
        handshake(self.urls["wrong-host"], trusting(self.ready["ca_bundle"]), "wrong.example")
        chain_only = trusting(self.ready["ca_bundle"])
        chain_only.check_hostname = False
        handshake(self.urls["wrong-host"], chain_only)  # the chain itself is fine

    def test_self_signed_is_trusted_only_by_itself(self) -> None:
        with self.assertRaises(urllib.error.URLError) as caught:
            fetch(f"{self.urls['self-signed']}/health", context=trusting(self.ready["ca_bundle"]))
        self.assertIsInstance(caught.exception.reason, ssl.SSLCertVerificationError)
        status, _, _ = fetch(f"{self.urls['self-signed']}/health",
                             context=trusting(self.ready["self_signed_cert"]))
        self.assertEqual(status, 200)

    def test_expiring_cert_expires_within_five_days(self) -> None:
        pem = ssl.get_server_certificate(address(self.urls["expiring"]), timeout=10)
        not_after = x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc
        left = not_after - datetime.datetime.now(datetime.timezone.utc)
        self.assertLessEqual(left, datetime.timedelta(days=5))
        self.assertGreater(left, datetime.timedelta(days=4, hours=23))
        handshake(self.urls["expiring"], trusting(self.ready["ca_bundle"]))  # still valid

    def test_health(self) -> None:
        expected = {"production": "production", "staging": "staging", "valid": "staging"}
        context = trusting(self.ready["ca_bundle"])
        for kind, environment in expected.items():
            with self.subTest(kind):
                status, headers, body = self.get_json(f"{self.urls[kind]}/health", context=context)
                self.assertEqual(status, 200)
                self.assertEqual(body, {"status": "ok", "version": "1.4.2", "environment": environment})
                self.assertEqual(headers["X-App-Version"], "1.4.2")
                self.assertEqual(headers["X-Environment"], environment)

    def test_health_version_override(self) -> None:
        status, headers, body = self.get_json(f"{self.urls['production']}/health?version=2.0.0-rc1")
        self.assertEqual((status, body["version"], body["environment"]), (200, "2.0.0-rc1", "production"))
        self.assertEqual(headers["X-App-Version"], "2.0.0-rc1")
        _, body = self.answer(f"{self.urls['production']}/health")
        self.assertEqual(body["version"], "1.4.2")  # the override was for that response only

    def test_login(self) -> None:
        url = f"{self.urls['staging']}/login"
        status, body = self.answer(url, method="POST", body={"user": "smoke", "password": "pw"})
        self.assertEqual(status, 200)
        self.assertEqual(body["user"], "smoke")
        self.assertRegex(body["token"], r"^t-[0-9a-f]{16}$")
        for bad in ({"user": "smoke", "password": ""}, {"password": "pw"}, {"user": 1, "password": "pw"},
                    [], b"not json"):
            with self.subTest(bad):
                self.assertEqual(self.answer(url, method="POST", body=bad),
                                 (401, {"error": "bad credentials"}))

    def test_slow(self) -> None:
        started = time.monotonic()
        status, body = self.answer(f"{self.urls['staging']}/slow?ms=300")
        self.assertGreaterEqual(time.monotonic() - started, 0.3)
        self.assertEqual((status, body), (200, {"slept_ms": 300}))
        self.assertEqual(fetch(f"{self.urls['staging']}/slow?ms=soon")[0], 400)

    def test_flaky(self) -> None:
        url = self.urls["production"]
        reset = time.monotonic()
        self.assertEqual(self.answer(f"{url}/flaky/reset", method="POST", body=b""), (200, {"reset": True}))
        status, headers, body = fetch(f"{url}/flaky?for=1")
        self.assertEqual((status, body), (503, b"warming up"))
        self.assertTrue(headers["Content-Type"].startswith("text/plain"))
        time.sleep(max(0.0, reset + 1.05 - time.monotonic()))
        self.assertEqual(self.answer(f"{url}/flaky?for=1"), (200, {"status": "ok"}))

    def test_run_migrations_counts_per_server(self) -> None:
        url = self.urls["staging"]
        _, before = self.answer(f"{url}/migrations")
        self.assertEqual(self.answer(f"{url}/run-migrations", method="POST", body=b""),
                         (200, {"migrations": before["migrations"] + 1}))
        self.assertEqual(self.answer(f"{url}/migrations"), (200, {"migrations": before["migrations"] + 1}))
        _, production = self.answer(f"{self.urls['production']}/migrations")
        self.assertEqual(production, {"migrations": 0})

    def test_api_items(self) -> None:
        url = f"{self.urls['valid']}/api/items"
        context = trusting(self.ready["ca_bundle"])
        for headers in ({}, {"X-Api-Key": "wrong"}):
            with self.subTest(headers):
                self.assertEqual(self.answer(url, headers=headers, context=context),
                                 (403, {"error": "forbidden"}))
        self.assertEqual(self.answer(url, headers={"x-api-key": "k3y-s3cr3t-value"}, context=context),
                         (200, {"items": [1, 2, 3]}))

    def test_anything_else_is_404(self) -> None:
        for method, path in (("GET", "/nope"), ("POST", "/health"), ("DELETE", "/api/items")):
            with self.subTest(f"{method} {path}"):
                self.assertEqual(fetch(f"{self.urls['staging']}{path}", method=method)[0], 404)

    def test_requests_are_logged_to_the_log_file(self) -> None:
        fetch(f"{self.urls['staging']}/health?marker=logged")
        log = (self.tmp / "https_apps.log").read_text()
        self.assertRegex(log, r"staging 127\.0\.0\.1 - \"GET /health\?marker=logged HTTP/1\.1\" 200")


class LifecycleTest(unittest.TestCase):
    """Launchers of their own, ended by SIGTERM or by their parent's death."""

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="understudy-https-apps-test-"))
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def test_sigterm_exits_zero_and_frees_the_ports(self) -> None:
        process = subprocess.Popen(launcher_command(self.tmp), stdout=subprocess.PIPE, text=True)
        self.addCleanup(kill, process)
        urls = read_ready_line(process.stdout)["urls"]
        unverified = ssl.create_default_context()
        unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
        for url in urls.values():
            self.assertEqual(fetch(f"{url}/health", context=unverified)[0], 200)

        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(timeout=10), 0)
        self.assertEqual(process.stdout.read(), "")  # nothing after the ready line
        for kind, url in urls.items():
            with self.subTest(kind):
                with self.assertRaises(ConnectionRefusedError):
                    socket.create_connection(address(url), timeout=5).close()
                with socket.socket() as listener:  # as the servers bind: SO_REUSEADDR
                    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    listener.bind(address(url))
                    listener.listen()

    def test_exits_with_its_parent(self) -> None:
        parent = subprocess.Popen(
            [sys.executable, "-c", PARENT_SCRIPT, *launcher_command(self.tmp, "--exit-with-parent")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.addCleanup(kill, parent)
        ready = read_ready_line(parent.stdout)
        self.addCleanup(kill_pid, ready["pid"])
        self.assertFalse(gone(ready["pid"]))

        parent.stdin.close()
        self.assertEqual(parent.wait(timeout=10), 0)
        self.assertTrue(wait_until_gone(ready["pid"], 5), "the launcher outlived its parent")
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(address(ready["urls"]["staging"]), timeout=5).close()


if __name__ == "__main__":
    unittest.main()
