"""The `in-cluster` context: Caspian in a pod on the hub (deploy/) reads the API
server with the pod's service account, through the real `kubernetes` client,
over HTTPS checked against the service account's CA, as a pod would. The server
is a local one with a certificate from a CA made for the test; the client's
service-account paths point at files written here."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from reconciler.kube import IN_CLUSTER, ArgoCDObserver, KubeObserver
from tests.fakehttp import Reply, serve
from tests.fleet.helpers import fleet_with
from tests.reconcile.test_argocd_observer import (
    APPS,
    CHECKED,
    SETTINGS,
    application,
    applications,
    job,
    settings,
)
from tests.reconcile.test_kube_observer import healthy, listing

TOKEN = "service-account-token-not-for-logs"
INCLUSTER = "kubernetes.config.incluster_config."

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def certificates(where: Path, *, name: str) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for 127.0.0.1: (ca, cert, key)."""
    where.mkdir()
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", f"/CN={name}-ca", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign", cwd=where)  # fmt: skip
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=api",
             cwd=where)  # fmt: skip
    (where / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext",
             cwd=where)  # fmt: skip
    return where / "ca.crt", where / "server.crt", where / "server.key"


@pytest.fixture
def pod(tmp_path, monkeypatch):
    """The pod's service account (token and CA), as Kubernetes mounts them; returns
    a function that points the pod at a server's port."""
    ca, cert, key = certificates(tmp_path / "cluster", name="cluster")
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(TOKEN)
    shutil.copy(ca, account / "ca.crt")
    monkeypatch.setattr(INCLUSTER + "SERVICE_TOKEN_FILENAME", str(account / "token"))
    monkeypatch.setattr(INCLUSTER + "SERVICE_CERT_FILENAME", str(account / "ca.crt"))

    def at(url: str) -> None:
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", url.rsplit(":", 1)[1])

    return (str(cert), str(key)), at


def bearer(header: str) -> str:
    """The token of an Authorization header (the client writes "bearer", which
    the API server reads as "Bearer")."""
    scheme, token = header.split(" ", 1)
    assert scheme.lower() == "bearer"
    return token


def in_cluster_spoke(name: str):
    fleet = fleet_with()
    spokes = tuple(
        s.model_copy(update={"spec": s.spec.model_copy(update={"kube_context": IN_CLUSTER})})
        if s.name == name
        else s
        for s in fleet.spokes
    )
    return fleet.model_copy(update={"spokes": spokes})


def test_a_spoke_in_cluster_is_read_with_the_pods_service_account(pod) -> None:
    tls, at = pod
    with serve(tls=tls) as api:
        assert api.url.startswith("https://")
        healthy(api)
        at(api.url)
        state = KubeObserver(kubeconfig=None).observe(in_cluster_spoke("paris"))["paris"]
        asked = api.requests_to("/api/v1/nodes")[0]
    assert state.up, state.reason
    assert state.jobs["batch/etl-5e6f7a8b"] == "Succeeded"
    assert bearer(asked.headers["authorization"]) == TOKEN


def test_argo_cds_applications_are_read_in_cluster(pod) -> None:
    tls, at = pod
    with serve(tls=tls) as api:
        api.route(APPS, applications(application("paris", [job("etl-9a8b7c6d", "Healthy")])))
        api.route(SETTINGS, settings(CHECKED))
        at(api.url)
        states = ArgoCDObserver(kubeconfig=None, context=IN_CLUSTER).observe(fleet_with())
        asked = api.requests_to(APPS)[0]
    assert states["paris"].jobs == {"batch/etl-9a8b7c6d": "Succeeded"}
    assert bearer(asked.headers["authorization"]) == TOKEN


def test_a_list_dripped_over_tls_is_cut_off_too(pod) -> None:
    # The cut shuts the socket under TLS's own reads.
    tls, at = pod
    with serve(tls=tls) as api:
        healthy(api)
        api.route("/api/v1/nodes", Reply(body=listing("NodeList", []), drip=0.1))
        at(api.url)
        started = time.monotonic()
        observer = KubeObserver(kubeconfig=None, timeout_s=0.5, whole_answer_s=1.0)
        state = observer.observe(in_cluster_spoke("paris"))["paris"]
        took = time.monotonic() - started
    assert not state.up and state.reason == "its API did not answer whole within 1 s"
    assert took < 3.0


def test_a_server_the_pods_ca_did_not_sign_is_not_trusted(pod, tmp_path, caplog) -> None:
    _, at = pod
    _, cert, key = certificates(tmp_path / "elsewhere", name="elsewhere")
    caplog.set_level(logging.WARNING)
    with serve(tls=(str(cert), str(key))) as api:
        healthy(api)
        at(api.url)
        state = KubeObserver(kubeconfig=None).observe(in_cluster_spoke("paris"))["paris"]
        asked = api.requests_to("/api/v1/")
    assert not state.up and asked == []  # the token never reached it
    assert TOKEN not in state.reason and TOKEN not in caplog.text


def test_outside_a_pod_in_cluster_is_a_reason_not_a_crash(pod, monkeypatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    state = KubeObserver(kubeconfig=None).observe(in_cluster_spoke("paris"))["paris"]
    assert not state.up
    assert "Service host/port is not set" in state.reason
