"""A throwaway PKI for TLS tests, made with the openssl CLI: a CA, a server certificate for
127.0.0.1 and localhost, a client certificate, and a rogue CA with its own client."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl CLI is not installed")

CA_EXTENSIONS = """\
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""
SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
"""
CLIENT_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
"""


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca: Path  # an unrelated CA
    rogue_cert: Path  # a client certificate the rogue CA signed
    rogue_key: Path


def _openssl(*args: str | Path) -> None:
    assert OPENSSL is not None
    result = subprocess.run(
        [OPENSSL, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"openssl {' '.join(map(str, args))}:\n{result.stderr}"


def _key(path: Path) -> Path:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    return path


def _ca(d: Path, name: str) -> tuple[Path, Path]:
    key = _key(d / f"{name}.key")
    csr, cert, ext = d / f"{name}.csr", d / f"{name}.pem", d / f"{name}.ext"
    ext.write_text(CA_EXTENSIONS)
    _openssl("req", "-new", "-key", key, "-subj", f"/CN={name}", "-out", csr)
    _openssl(
        "x509", "-req", "-in", csr, "-signkey", key, "-days", "2", "-sha256",
        "-extfile", ext, "-out", cert,
    )  # fmt: skip
    return cert, key


def _leaf(d: Path, name: str, cn: str, extensions: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    key = _key(d / f"{name}.key")
    csr, cert, ext = d / f"{name}.csr", d / f"{name}.pem", d / f"{name}.ext"
    ext.write_text(extensions)
    _openssl("req", "-new", "-key", key, "-subj", f"/CN={cn}", "-out", csr)
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-days", "2", "-sha256", "-extfile", ext, "-out", cert,
    )  # fmt: skip
    return cert, key


def make_pki(d: Path) -> Pki:
    """Every certificate and key of a ``Pki``, written to ``d``."""
    ca = _ca(d, "poolsim-test-ca")
    server = _leaf(d, "server", "localhost", SERVER_EXTENSIONS, ca)
    client = _leaf(d, "client", "poolsim-test-client", CLIENT_EXTENSIONS, ca)
    rogue_ca = _ca(d, "rogue-ca")
    rogue = _leaf(d, "rogue", "poolsim-test-client", CLIENT_EXTENSIONS, rogue_ca)
    return Pki(ca[0], server[0], server[1], client[0], client[1], rogue_ca[0], rogue[0], rogue[1])


def channel_credentials(
    ca: Path, cert: Path | None = None, key: Path | None = None
) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )
