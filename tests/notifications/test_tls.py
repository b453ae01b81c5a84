"""STARTTLS and implicit TLS with login, against an aiosmtpd server whose certificate is made here."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from config.settings import Settings
from models import Lifecycle
from models.errors import InvalidInputError
from models.outbox import DeliveryStatus
from notifications import dispatch_once
from notifications.sink import free_port
from tests.factories import T0, make_proposal
from tests.notifications.helpers import deliveries

USER, PASSWORD = "forumflow-relay", "s3cret-relay-pass"
# aiosmtpd warns when the implicit-TLS server below requires AUTH without STARTTLS; the transport is TLS.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


@dataclass(frozen=True)
class Pki:
    """A CA made for the test, and a server certificate for 127.0.0.1 signed by it."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Generate the CA and the server certificate with ``cryptography``."""
    folder = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)  # certificates are checked against the real clock
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("forumflow test CA")).issuer_name(_name("forumflow test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
        ), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pems = {
        "ca.pem": ca.public_bytes(serialization.Encoding.PEM),
        "server.pem": cert.public_bytes(serialization.Encoding.PEM),
        "server.key": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    }
    for name, data in pems.items():
        (folder / name).write_bytes(data)
    return Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key")


@dataclass
class Relay:
    """What the server saw: logins tried, and each accepted mail with whether it came over TLS and logged in."""

    logins: list[tuple[str, bool]] = field(default_factory=list)
    mails: list[tuple[str, bool, bool]] = field(default_factory=list)  # (recipient, tls, authenticated)

    def authenticator(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (USER.encode(), PASSWORD.encode())
        self.logins.append((data.login.decode() if isinstance(data, LoginPassword) else "?", ok))
        return AuthResult(success=ok, handled=False)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        tls = server.transport is not None and server.transport.get_extra_info("ssl_object") is not None
        for rcpt in envelope.rcpt_tos:
            self.mails.append((rcpt, tls, bool(session.authenticated)))
        return "250 2.0.0 Accepted"


def _server_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    return context


@pytest.fixture(params=["starttls", "tls"])
def relay(request: pytest.FixtureRequest, pki: Pki) -> Iterator[tuple[str, int, Relay]]:
    """A relay that demands login: over STARTTLS (required before anything else) or implicit TLS."""
    handler, port = Relay(), free_port()
    common: dict[str, Any] = {"authenticator": handler.authenticator, "auth_required": True}
    if request.param == "starttls":
        controller = Controller(
            handler, hostname="127.0.0.1", port=port, tls_context=_server_context(pki), require_starttls=True, **common
        )
    else:  # aiosmtpd cannot tell an implicit-TLS transport from plain text, hence auth_require_tls=False
        controller = Controller(
            handler, hostname="127.0.0.1", port=port, ssl_context=_server_context(pki), auth_require_tls=False, **common
        )
    controller.start()
    yield request.param, port, handler
    controller.stop()


def _settings(tmp_path: Path, mode: str, port: int, **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "data_dir": tmp_path, "smtp_host": "127.0.0.1", "smtp_port": port, "smtp_tls": mode, "smtp_timeout": 5,
        "smtp_username": USER, "smtp_password": SecretStr(PASSWORD), "smtp_connections": 2,
    }
    return Settings(**(base | kw))


def test_mail_goes_over_tls_with_login_verified_against_the_ca(
    forum: Engine, lifecycle: Lifecycle, tmp_path: Path, relay: tuple[str, int, Relay], pki: Pki
) -> None:
    mode, port, server = relay
    make_proposal(forum, lifecycle, state="in_review")

    report = dispatch_once(forum, _settings(tmp_path, mode, port, smtp_ca_file=pki.ca_file), lifecycle, now=T0).send

    assert (report.sent, report.errors) == (3, [])
    assert len(server.mails) == 3 and all(tls and authenticated for _, tls, authenticated in server.mails)
    assert server.logins and all(login == (USER, True) for login in server.logins)
    assert {r.status for r in deliveries(forum)} == {DeliveryStatus.SENT}


def test_a_certificate_the_client_cannot_verify_sends_nothing_and_uses_no_attempt(
    db: Engine, lifecycle: Lifecycle, tmp_path: Path, relay: tuple[str, int, Relay]
) -> None:
    mode, port, server = relay
    make_proposal(db, lifecycle, state="in_review")

    report = dispatch_once(db, _settings(tmp_path, mode, port), lifecycle, now=T0).send  # no CA file: untrusted

    assert report.sent == 0 and report.unreachable == 3
    assert "CERTIFICATE_VERIFY_FAILED" in report.errors[0]
    assert server.mails == [] and server.logins == []  # the password never left
    assert {(r.status, r.attempts) for r in deliveries(db)} == {(DeliveryStatus.PENDING, 0)}


def test_a_refused_login_sends_nothing_and_uses_no_attempt(
    db: Engine, lifecycle: Lifecycle, tmp_path: Path, relay: tuple[str, int, Relay], pki: Pki
) -> None:
    mode, port, server = relay
    make_proposal(db, lifecycle, state="in_review")
    settings = _settings(tmp_path, mode, port, smtp_ca_file=pki.ca_file, smtp_password=SecretStr("wrong"))

    report = dispatch_once(db, settings, lifecycle, now=T0).send

    assert report.sent == 0 and report.unreachable == 3
    assert "session refused: 535" in report.errors[0]
    # One session tried (each mechanism the server offers, PLAIN and LOGIN), not one per mail.
    assert server.logins == [(USER, False)] * 2 and server.mails == []
    assert {(r.status, r.attempts) for r in deliveries(db)} == {(DeliveryStatus.PENDING, 0)}


def test_a_missing_ca_file_is_refused_in_one_line(db: Engine, lifecycle: Lifecycle, tmp_path: Path) -> None:
    make_proposal(db, lifecycle, state="in_review")
    settings = _settings(tmp_path, "starttls", free_port(), smtp_ca_file=tmp_path / "nowhere.pem")

    with pytest.raises(InvalidInputError, match="FORUMFLOW_SMTP_CA_FILE: no such file"):
        dispatch_once(db, settings, lifecycle, now=T0)
    assert deliveries(db) == []  # refused before planning: nothing was written
    with pytest.raises(InvalidInputError, match="FORUMFLOW_SMTP_HOST: must not be empty"):
        dispatch_once(db, settings.model_copy(update={"smtp_ca_file": None, "smtp_host": " "}), lifecycle, now=T0)
    assert deliveries(db) == []
