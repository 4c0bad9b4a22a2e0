"""Certificates and kubeconfigs for the local cluster, made with the openssl CLI.

One CA signs everything. Keys are ECDSA P-256 (fast to make on a small machine).

* ``apiserver``        serving cert of kube-apiserver (127.0.0.1, the service IP, kubernetes.*)
* ``admin``            client cert, O=system:masters: tests, controller-manager, scheduler,
                       the driver, and kube-apiserver's client cert towards the kubelet
* ``kubelet-client``   client cert of the kubelet, CN=system:node:<node>, O=system:nodes
* ``kubelet-serving``  serving cert of the kubelet (node IP, node name)
* ``sa``               service-account token signing key pair
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _key(path: Path) -> None:
    _openssl(
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        str(path),
        cwd=path.parent,
    )
    path.chmod(0o600)


@dataclass(frozen=True)
class Pki:
    dir: Path

    def crt(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    @property
    def ca(self) -> Path:
        return self.crt("ca")

    @property
    def sa_key(self) -> Path:
        return self.key("sa")

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"


def _sign(pki: Pki, name: str, subject: str, *, client: bool, sans: list[str]) -> None:
    d = pki.dir
    _key(pki.key(name))
    csr = d / f"{name}.csr"
    _openssl("req", "-new", "-key", str(pki.key(name)), "-subj", subject, "-out", str(csr), cwd=d)
    ext = d / f"{name}.ext"
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}",
    ]
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    ext.write_text("\n".join(lines) + "\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(pki.ca),
        "-CAkey",
        str(pki.key("ca")),
        "-CAcreateserial",
        "-days",
        "30",
        "-sha256",
        "-extfile",
        str(ext),
        "-out",
        str(pki.crt(name)),
        cwd=d,
    )
    csr.unlink()
    ext.unlink()


def make_pki(directory: Path, *, node_name: str, node_ip: str, service_ip: str) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory)
    _key(pki.key("ca"))
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(pki.key("ca")),
        "-subj",
        "/CN=dra-e2e-ca",
        "-days",
        "30",
        "-sha256",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-out",
        str(pki.ca),
        cwd=directory,
    )
    _sign(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        client=False,
        sans=[
            "IP:127.0.0.1",
            f"IP:{service_ip}",
            f"IP:{node_ip}",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ],
    )
    _sign(pki, "admin", "/O=system:masters/CN=e2e-admin", client=True, sans=[])
    _sign(
        pki, "kubelet-client", f"/O=system:nodes/CN=system:node:{node_name}", client=True, sans=[]
    )
    _sign(
        pki,
        "kubelet-serving",
        f"/CN={node_name}",
        client=False,
        sans=[f"IP:{node_ip}", "IP:127.0.0.1", f"DNS:{node_name}", "DNS:localhost"],
    )
    _key(pki.sa_key)
    _openssl("pkey", "-in", str(pki.sa_key), "-pubout", "-out", str(pki.sa_pub), cwd=directory)
    return pki


def write_kubeconfig(path: Path, *, server: str, pki: Pki, user: str, name: str) -> Path:
    """A kubeconfig with the certificates embedded (so it can be copied anywhere)."""

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "e2e",
                "cluster": {"server": server, "certificate-authority-data": b64(pki.ca)},
            }
        ],
        "users": [
            {
                "name": name,
                "user": {
                    "client-certificate-data": b64(pki.crt(user)),
                    "client-key-data": b64(pki.key(user)),
                },
            }
        ],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": name}}],
        "current-context": "e2e",
    }
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    return path
