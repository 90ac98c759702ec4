"""Reading a kubeconfig into a connection (porter_lb.kube.api), and a watch's lines.

Against the real API server, every bed test's controller and agents connect through a
kubeconfig with inlined client certificate data, and the installed pods through the service
account; these tables cover the kubeconfig shapes the bed does not make.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from porter_lb.kube import api
from porter_lb.kube.api import KubeconfigError, TokenFile, _lines, load_api_client


def _pem_pair() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "porter-lb-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


CERT, KEY = _pem_pair()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(tmp_path: Path, user: dict[str, Any], cluster: dict[str, Any] | None = None) -> str:
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": "https://127.0.0.1:6443/",
                    "certificate-authority-data": b64(CERT),
                    **(cluster or {}),
                },
            }
        ],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(document))
    return str(path)


@pytest.mark.parametrize(
    ("user", "token"),
    [
        ({"token": "t0ken"}, "t0ken"),
        ({"tokenFile": "token.txt"}, "from-file"),  # relative to the kubeconfig's directory
        ({"client-certificate-data": b64(CERT), "client-key-data": b64(KEY)}, ""),
        ({"client-certificate": "cert.pem", "client-key": "key.pem"}, ""),
        ({}, ""),  # TLS only, anonymous
    ],
)
def test_a_kubeconfig_read_here_gives_the_server_and_the_token(
    tmp_path: Path, user: dict[str, Any], token: str
) -> None:
    (tmp_path / "token.txt").write_text("from-file\n")
    (tmp_path / "cert.pem").write_bytes(CERT)
    (tmp_path / "key.pem").write_bytes(KEY)
    connection = load_api_client(kubeconfig(tmp_path, user))
    assert connection.host == "https://127.0.0.1:6443"
    assert connection.token() == token


@pytest.mark.parametrize(
    ("user", "cluster"),
    [
        ({"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "x"}}, {}),
        ({"auth-provider": {"name": "oidc"}}, {}),
        ({"username": "a", "password": "b"}, {}),
        ({"token": "t"}, {"proxy-url": "http://proxy.invalid:3128"}),
    ],
)
def test_a_kubeconfig_with_more_goes_to_the_official_loader(
    tmp_path: Path, user: dict[str, Any], cluster: dict[str, Any]
) -> None:
    path = kubeconfig(tmp_path, user, cluster)
    assert api._from_kubeconfig(path, None, 4) is None


@pytest.mark.parametrize(
    ("user", "context", "message"),
    [
        ({"token": "t"}, "elsewhere", "no context named 'elsewhere'"),
        (
            {"client-certificate-data": b64(b"not a certificate"), "client-key-data": b64(KEY)},
            None,
            "kubeconfig",
        ),
        ({"tokenFile": "missing.txt"}, None, "missing.txt"),
    ],
)
def test_a_kubeconfig_that_cannot_be_used_is_one_clear_error(
    tmp_path: Path, user: dict[str, Any], context: str | None, message: str
) -> None:
    path = kubeconfig(tmp_path, user)
    with pytest.raises(KubeconfigError, match=f"cannot load kubeconfig {path}") as raised:
        load_api_client(path, context=context).token()
    assert message in str(raised.value)


def test_a_token_file_is_read_again_after_the_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(api.time, "monotonic", lambda: now[0])
    path = tmp_path / "token"
    path.write_text("first")
    token = TokenFile(path)
    assert token() == "first"
    path.write_text("second")
    now[0] += api.TOKEN_REREAD_S - 1
    assert token() == "first"
    now[0] += 1
    assert token() == "second"


class Chunks:
    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    def stream(self, amt: int | None = None, decode_content: bool = False) -> Iterator[bytes]:
        yield from self.chunks


@pytest.mark.parametrize(
    ("chunks", "lines"),
    [
        ((b'{"a":1}\n{"b":2}\n',), ['{"a":1}', '{"b":2}']),
        ((b'{"a":', b"1}\n", b'{"b"', b":2}\n"), ['{"a":1}', '{"b":2}']),  # split anywhere
        ((b"x\n\ny\n",), ["x", "", "y"]),
        ((b"tail without newline",), ["tail without newline"]),
        (("é\n".encode(),), ["é"]),
    ],
)
def test_a_watch_yields_whole_lines_whatever_the_chunks(
    chunks: tuple[bytes, ...], lines: list[str]
) -> None:
    assert list(_lines(Chunks(*chunks))) == lines


@pytest.mark.parametrize("proxy", ["", "http://proxy.invalid:3128"])
def test_the_official_clients_configuration_keeps_its_host_token_and_proxy(proxy: str) -> None:
    """The Ansible modules pass kubernetes.core's client (a bearer token from AWX's
    credential, maybe a proxy): the requests go where, and as whom, it says."""
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = "https://203.0.113.9:6443"
    configuration.api_key = {"authorization": "Bearer awx-token"}
    configuration.proxy = proxy or None
    connection = api.Connection.of_configuration(configuration)
    assert connection.host == "https://203.0.113.9:6443"
    assert connection.token() == "awx-token"
    assert isinstance(connection.pool, urllib3.ProxyManager) == bool(proxy)
