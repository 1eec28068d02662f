"""The mirror on the local network (`mirror --lan`): a phone or tablet grants its camera only to
a secure context, so the server speaks HTTPS with a self-signed certificate made on first use;
and the LAN is not the user's own machine, so every request needs an access token.

Both live in the user's config folder (`$STYLEMIRROR_CONFIG`, else `$XDG_CONFIG_HOME/stylemirror`,
else `~/.config/stylemirror`), readable by the user only, so a phone that trusted the
certificate once, or a kiosk page holding the token's cookie, keeps working across restarts."""

import datetime
import io
import ipaddress
import os
import secrets
import socket
import ssl
import tempfile
from pathlib import Path

from .atomic import temporary_prefix

TOKEN_FILE, CERT_FILE, KEY_FILE = "token", "mirror-cert.pem", "mirror-key.pem"
CERT_DAYS = 397  # phones refuse longer-lived server certificates (Apple's limit is 398 days)


def config_dir() -> Path:
    if os.environ.get("STYLEMIRROR_CONFIG"):
        return Path(os.environ["STYLEMIRROR_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "stylemirror"


def lan_address() -> str:
    """This machine's address on its local network: the one its default route leaves from
    (connecting a UDP socket sends nothing); 127.0.0.1 on a machine with no network."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never answered, only routed
            address = probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"
    return "127.0.0.1" if address == "0.0.0.0" else address


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def private_file(path: Path, data: bytes):
    """Written atomically and readable by the user only from its first byte (mkstemp's 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def access_token(folder: Path | None = None) -> str:
    """The mirror's access token, made once (128 random bits) and kept."""
    path = (folder or config_dir()) / TOKEN_FILE
    try:
        token = path.read_text().strip()
        if len(token) >= 16 and token.isascii() and token.replace("-", "").replace("_", "").isalnum():
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(16)
    private_file(path, token.encode())
    return token


def certificate(addresses, folder: Path | None = None) -> tuple[Path, Path]:
    """(certificate, key) files of a self-signed certificate for `addresses` (IPs or names),
    made again only when the kept one has expired or does not name them all."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    folder = folder or config_dir()
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    names = {"localhost", "127.0.0.1", *addresses}
    if covers(cert_path, key_path, names):
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, f"stylemirror on {socket.gethostname()}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    san = [x509.IPAddress(ipaddress.ip_address(n)) if is_ip(n) else x509.DNSName(n) for n in sorted(names)]
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    private_file(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    private_file(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def covers(cert_path: Path, key_path: Path, names) -> bool:
    """Whether the kept certificate is readable, valid for a day more, and names every one of `names`."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if not key_path.is_file():
            return False
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    have = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    return set(names) <= have and cert.not_valid_after_utc > soon


def tls_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    return context


def qr_code(url: str) -> str:
    """The URL as a QR code for a terminal (half-height blocks: two rows of modules a line)."""
    import segno

    out = io.StringIO()
    segno.make(url, error="l").terminal(out, compact=True, border=2)
    return out.getvalue()
