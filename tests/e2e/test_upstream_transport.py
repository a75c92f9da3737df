"""Upstream transport: a proxy named by the environment (HTTP_PROXY and
friends) carries the gateway's upstream requests, as it does for other HTTP
clients, and NO_PROXY still exempts the hosts it names; an https upstream
is spoken TLS to, with its certificate checked against the public roots and
the certificate authorities named by --upstream-ca-file."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

from harness import launch_gateway, require_built

ANSWER = {
    "id": "chatcmpl-proxied",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-fake",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "answered"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
}


class _ForwardProxy(ThreadingHTTPServer):
    """An HTTP forward proxy that answers every request itself, recording
    the request line (absolute-form, as clients send to a proxy)."""

    def __init__(self, tls=None) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.requests: list[dict] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append(
            {
                "target": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": json.loads(body),
            }
        )
        payload = json.dumps(ANSWER).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def proxy():
    server = _ForwardProxy()
    yield server
    server.shutdown()


def _config(tmp_path, base_url: str):
    config = tmp_path / "portico.toml"
    config.write_text(
        "[[endpoints]]\n"
        'name = "proxied"\nprovider = "openai"\nmodel = "gpt-fake"\n'
        "[endpoints.config]\n"
        f'api_key = "sk-upstream-key"\nbase_url = "{base_url}"\n'
    )
    return config


def test_upstream_requests_go_through_the_environment_proxy(proxy, tmp_path):
    require_built("openai")
    # `.invalid` never resolves: only the proxy can carry the request.
    config = _config(tmp_path, "http://provider.invalid/v1")
    env = {"HTTP_PROXY": proxy.url, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    with launch_gateway(tmp_path, config, env=env) as gw:
        client = openai.OpenAI(base_url=gw.openai_base_url, api_key="dummy", max_retries=0)
        answer = client.chat.completions.create(
            model="proxied", messages=[{"role": "user", "content": "hi"}]
        )
        assert "go through the proxy" in gw.log_text()
    assert answer.choices[0].message.content == "answered"
    assert len(proxy.requests) == 1
    seen = proxy.requests[0]
    assert seen["target"] == "http://provider.invalid/v1/chat/completions"
    assert seen["headers"]["host"] == "provider.invalid"
    assert seen["headers"]["authorization"] == "Bearer sk-upstream-key"
    assert seen["headers"]["x-request-id"]
    assert seen["body"]["model"] == "gpt-fake"
    assert seen["body"]["messages"] == [{"role": "user", "content": "hi"}]


def test_no_proxy_hosts_are_reached_directly(proxy, tmp_path):
    require_built("openai")
    upstream = _ForwardProxy()  # answers direct requests the same way
    try:
        config = _config(tmp_path, f"{upstream.url}/v1")
        env = {"HTTP_PROXY": proxy.url, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        with launch_gateway(tmp_path, config, env=env) as gw:
            client = openai.OpenAI(base_url=gw.openai_base_url, api_key="dummy", max_retries=0)
            answer = client.chat.completions.create(
                model="proxied", messages=[{"role": "user", "content": "hi"}]
            )
        assert answer.choices[0].message.content == "answered"
        assert proxy.requests == []
        assert [r["target"] for r in upstream.requests] == ["/v1/chat/completions"]
    finally:
        upstream.shutdown()


def _certificate(subject: str, issuer: str, public_key, signing_key, *, ca: bool = False):
    """A day-long certificate for `subject` signed by `signing_key`: a CA's
    when `ca`, a server's for 127.0.0.1 otherwise."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    def name(common_name: str):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if ca:
        usage = dict.fromkeys(
            ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "encipher_only", "decipher_only"],
            False,
        )
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        builder = builder.add_extension(x509.KeyUsage(key_cert_sign=True, crl_sign=True, **usage), critical=True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(signing_key, hashes.SHA256())


def _write_pem(path, certificate=None, key=None):
    from cryptography.hazmat.primitives import serialization

    if certificate is not None:
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
    return path


def _self_signed(tmp_path):
    """A certificate for 127.0.0.1 that no public root vouches for."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate("127.0.0.1", "127.0.0.1", key.public_key(), key)
    return _write_pem(tmp_path / "cert.pem", cert), _write_pem(tmp_path / "key.pem", key=key)


def test_https_upstreams_are_spoken_tls_and_their_certificate_is_checked(tmp_path):
    """An https base URL gets a TLS handshake, and a certificate no public
    root vouches for is refused: the client gets a gateway error and no
    request is sent over the connection."""
    import socket
    import ssl

    require_built("openai")
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2", "http/1.1"])
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    handshakes: list[str] = []

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            with raw:
                raw.settimeout(5)
                try:
                    with context.wrap_socket(raw, server_side=True) as tls:
                        handshakes.append(f"completed {tls.selected_alpn_protocol()}")
                        tls.recv(1)
                except (ssl.SSLError, OSError) as error:
                    handshakes.append(f"refused {getattr(error, 'reason', error)}")

    threading.Thread(target=serve, daemon=True).start()
    try:
        config = _config(tmp_path, f"https://127.0.0.1:{port}/v1")
        with launch_gateway(tmp_path, config) as gw:
            client = openai.OpenAI(base_url=gw.openai_base_url, api_key="dummy", max_retries=0)
            with pytest.raises(openai.APIStatusError) as raised:
                client.chat.completions.create(model="proxied", messages=[{"role": "user", "content": "hi"}])
    finally:
        listener.close()
    assert raised.value.status_code == 502
    assert "could not be reached" in raised.value.message
    assert "invalid peer certificate: UnknownIssuer" in raised.value.message
    # The gateway aborted the handshake itself (an unknown issuer alert):
    # it did offer TLS, and never got as far as sending the request.
    assert handshakes and all(h == "refused TLSV1_ALERT_UNKNOWN_CA" for h in handshakes), handshakes


def _private_ca(tmp_path):
    """A private certificate authority and a certificate it issued for
    127.0.0.1, as a company's internal CA or a TLS-inspecting proxy would."""
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Portico Test Private CA", "Portico Test Private CA", ca_key.public_key(), ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate("127.0.0.1", "Portico Test Private CA", key.public_key(), ca_key)
    return (
        _write_pem(tmp_path / "ca.pem", ca),
        _write_pem(tmp_path / "leaf.pem", leaf),
        _write_pem(tmp_path / "leaf-key.pem", key=key),
    )


def test_upstream_ca_file_trusts_a_private_certificate_authority(tmp_path):
    """With --upstream-ca-file, an upstream whose certificate a private CA
    issued is spoken to over TLS, and the request arrives whole."""
    import ssl

    require_built("openai")
    ca, cert, key = _private_ca(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    upstream = _ForwardProxy(tls=context)
    try:
        port = upstream.server_address[1]
        config = _config(tmp_path, f"https://127.0.0.1:{port}/v1")
        with launch_gateway(tmp_path, config, extra_args=["--upstream-ca-file", str(ca)]) as gw:
            client = openai.OpenAI(base_url=gw.openai_base_url, api_key="dummy", max_retries=0)
            answer = client.chat.completions.create(
                model="proxied", messages=[{"role": "user", "content": "over tls"}]
            )
    finally:
        upstream.shutdown()
    assert answer.choices[0].message.content == "answered"
    assert len(upstream.requests) == 1
    seen = upstream.requests[0]
    assert seen["target"] == "/v1/chat/completions"
    assert seen["headers"]["authorization"] == "Bearer sk-upstream-key"
    assert seen["body"]["messages"] == [{"role": "user", "content": "over tls"}]


@pytest.mark.parametrize(
    "content, reason",
    [
        (None, "cannot read"),
        (b"not a certificate\n", "no certificate"),
        (
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
            "cannot use",
        ),
    ],
)
def test_unusable_upstream_ca_file_stops_the_start(tmp_path, content, reason):
    """A CA file that is missing, holds no certificate or a broken one stops
    the gateway at start with a message naming the file, rather than
    serving without the trust the operator asked for."""
    import subprocess

    from harness import BINARY, PLUGINS_DIR

    require_built("openai")
    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_bytes(content)
    config = _config(tmp_path, "https://127.0.0.1:9/v1")
    result = subprocess.run(
        [
            str(BINARY), "--listen", "127.0.0.1:0", "--plugins-dir", str(PLUGINS_DIR),
            "--config", str(config), "--data-dir", str(tmp_path / "data"),
            "--upstream-ca-file", str(ca),
        ],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert str(ca) in output, output
    assert reason in output, output
