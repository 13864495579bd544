"""A private certificate authority and a Mosquitto that requires TLS and passwords, for MQTT tests.

``make_private_ca(dir)`` writes, with the ``openssl`` command: a CA (``ca.pem``), a server
certificate for 127.0.0.1 signed by it and a client certificate (CN ``client``) signed by it.
``secure_mosquitto(dir, users)`` starts a mosquitto with a password file holding ``users`` and
two TLS listeners: ``tls_port`` (server certificate only) and ``mtls_port`` (also requires a
client certificate from the CA). Its plain listener refuses anonymous clients.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from servers import MosquittoProcess, free_port


@dataclass(frozen=True)
class PrivateCA:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@dataclass
class SecureBroker:
    broker: MosquittoProcess
    ca: PrivateCA
    tls_port: int
    mtls_port: int

    def url(self, port: int | None = None, user: str | None = None) -> str:
        """``mqtts://[user@]127.0.0.1:port`` (the TLS listener unless ``port``)."""
        return f"mqtts://{user + '@' if user else ''}127.0.0.1:{port or self.tls_port}"

    def stop(self) -> None:
        self.broker.cleanup()


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=cwd, timeout=60)


def _signed(cwd: Path, name: str, subject: str, ext: str) -> None:
    """``name.key`` and ``name.pem``: a key and a certificate for ``subject`` signed by ``ca.pem``."""
    _openssl(cwd, "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", f"{name}.key",
             "-out", f"{name}.csr")
    (cwd / f"{name}.ext").write_text(ext)
    _openssl(cwd, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem")


def make_private_ca(d: Path) -> PrivateCA:
    """A fresh CA with a server certificate for 127.0.0.1 and a client certificate, in ``d``."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=orbitwin-test-ca",
             "-keyout", "ca.key", "-out", "ca.pem")
    _signed(d, "server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1\n")
    _signed(d, "client", "/CN=client", "extendedKeyUsage=clientAuth\n")
    return PrivateCA(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key")


def secure_mosquitto(d: Path, users: dict[str, str]) -> SecureBroker:
    """A mosquitto requiring passwords (``users``), with a TLS and a mutual-TLS listener (see module doc)."""
    ca = make_private_ca(d / "pki")
    passwd = d / "passwd"
    for k, (user, password) in enumerate(users.items()):
        subprocess.run(["mosquitto_passwd", "-b", *([] if k else ["-c"]), str(passwd), user, password], check=True,
                       capture_output=True, timeout=30)
    tls_port, mtls_port = free_port(), free_port()
    files = f"cafile {ca.ca}\ncertfile {ca.server_cert}\nkeyfile {ca.server_key}\n"
    broker = MosquittoProcess(password_file=passwd, extra_config=(
        f"listener {tls_port} 127.0.0.1\n{files}"
        f"listener {mtls_port} 127.0.0.1\n{files}require_certificate true\n")).start()
    return SecureBroker(broker, ca, tls_port, mtls_port)
