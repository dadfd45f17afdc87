"""Self-signed TLS on a broker demo server: a CA bundle works, an explicit opt-out works, and the
default refuses the certificate with one clear message (no retries, no traceback)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from exporter.errors import HTTPError
from exporter.sandbox.traderevolution import (
    BASE_PATH,
    TraderEvolutionSimConfig,
    TraderEvolutionSimulator,
    run_in_thread,
)

from .helpers import make_job, read_dataset, run

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    simulator = TraderEvolutionSimulator(TraderEvolutionSimConfig(users=5, rate_limit_rps=0))
    with run_in_thread(simulator.make_app(), ssl_context=context) as root:
        assert root.startswith("https://")
        yield root + BASE_PATH, cert


def env(url: str) -> dict[str, str]:
    return {
        "TRADEREVOLUTION_BASE_URL": url,
        "TRADEREVOLUTION_LOGIN": "sim-user",
        "TRADEREVOLUTION_PASSWORD": "sim-pass",
    }


def job(**options: object):
    return make_job({"traderevolution": {"datasets": ["accounts"], "rps": 0, **options}}, name="tls")


def test_default_verification_refuses_a_self_signed_certificate(tls_server, tmp_path: Path) -> None:
    url, _ = tls_server
    with pytest.raises(HTTPError, match="ca_bundle") as info:
        run(job(max_attempts=3), tmp_path, env(url))
    assert "verify_tls" in str(info.value)


def test_ca_bundle_trusts_the_server(tls_server, tmp_path: Path) -> None:
    url, cert = tls_server
    run(job(ca_bundle=str(cert)), tmp_path, env(url))
    assert read_dataset(tmp_path, "traderevolution", "accounts").num_rows > 0


def test_explicit_opt_out_skips_verification(tls_server, tmp_path: Path) -> None:
    url, _ = tls_server
    run(job(verify_tls=False), tmp_path, env(url))
    assert read_dataset(tmp_path, "traderevolution", "accounts").num_rows > 0
