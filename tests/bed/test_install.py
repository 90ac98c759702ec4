"""porter-lb's install artifacts against a real kube-apiserver.

- Every manifest `helm template` renders (default and central values) passes a server-side
  dry run (dryRun=All) on the bed's API server, which has the CRDs.
- The roles porter.lb.controller and porter.lb.agent, driven by ansible-playbook, on a
  control plane of their own (they create and delete cluster-wide objects, CRDs included,
  which the session's other tests rely on): check mode on a fresh cluster writes nothing; a
  second run changes nothing; state absent leaves nothing; and what the roles render equals
  `helm template` for the same values.

No kubelet runs: no pod starts. Everything is asserted on the objects in the API server. The
same install paths on a real cluster, pods Ready and traffic through the router: tests/cluster/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

from porter_lab import objects
from porter_lab.agents import Agent
from porter_lab.ansible_run import recap
from porter_lab.controlplane import ControlPlane
from porter_lab.helm import helm_binary
from porter_lab.kube import load_manifests
from porter_lab.paths import CRD_DIR
from porter_lab.processes import Daemon
from porter_lab.speakers import Gobgpd
from porter_lab.topology import NODE_ASN, Topology, run_id
from porter_lab.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts/porter-lb"
BIN = Path(sys.executable).parent
FINALIZER = "lb.porter-lb.io/finalizer"

# The same settings, once as the roles' variables and once as the chart's values: every
# variable differs from its default, so a wrong mapping shows.
ROLE_VARIABLES = {
    "controller_namespace": "plb-values",
    "controller_image": "registry.example/porter-lb-controller:test",
    "controller_image_pull_policy": "Always",
    "controller_replicas": 3,
    "controller_speaker": "none",
    "controller_host_network": True,
    "controller_metrics_port": 17472,
    "controller_webhook_port": 19443,
    "controller_load_balancer_class": "example.com/lb",
    "controller_log_level": "debug",
    "controller_node_selector": {"example.com/lb": "yes"},
    "controller_tolerations": [{"key": "example.com/lb", "operator": "Exists"}],
    "controller_resources": {"limits": {"memory": "256Mi"}},
    "agent_namespace": "plb-values",
    "agent_image": "registry.example/porter-lb-agent:test",
    "agent_image_pull_policy": "Always",
    "agent_host_rules": "table",
    "agent_heartbeat_interval": 0.5,
    "agent_heartbeat_timeout": 1.5,
    "agent_metrics_port": 17473,
    "agent_load_balancer_class": "example.com/lb",
    "agent_log_level": "debug",
    "agent_node_selector": {"example.com/lb": "yes"},
    "agent_tolerations": [],
    "agent_resources": {"limits": {"memory": "256Mi"}},
}
CHART_VALUES = {
    "namespace": "plb-values",
    "imagePullPolicy": "Always",
    "loadBalancerClass": "example.com/lb",
    "logLevel": "debug",
    "controller": {
        "image": "registry.example/porter-lb-controller:test",
        "replicas": 3,
        "speaker": "none",
        "hostNetwork": True,
        "metricsPort": 17472,
        "webhookPort": 19443,
        "nodeSelector": {"example.com/lb": "yes"},
        "tolerations": [{"key": "example.com/lb", "operator": "Exists"}],
        "resources": {"limits": {"memory": "256Mi"}},
    },
    "agent": {
        "image": "registry.example/porter-lb-agent:test",
        "hostRules": "table",
        "heartbeatInterval": 0.5,
        "heartbeatTimeout": 1.5,
        "metricsPort": 17473,
        "nodeSelector": {"example.com/lb": "yes"},
        "tolerations": [],
        "resources": {"limits": {"memory": "256Mi"}},
    },
}

INSTALL = """
- name: Install porter-lb
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: porter.lb.controller
    - role: porter.lb.agent
"""
INSTALL_CONTROLLER = """
- name: Install porter-lb's controller (central speaker)
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: porter.lb.controller
"""
UNINSTALL = """
- name: Uninstall porter-lb
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: porter.lb.agent
      vars:
        agent_state: absent
    - role: porter.lb.controller
      vars:
        controller_state: absent
        controller_remove_crds: true
"""
RENDER = """
- name: Render porter-lb's manifests as the roles would apply them
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Controller
      ansible.builtin.include_role:
        name: porter.lb.controller
        tasks_from: render
    - name: Agent
      ansible.builtin.include_role:
        name: porter.lb.agent
        tasks_from: render
      when: with_agent | default(true)
    - name: Write them out
      ansible.builtin.copy:
        content: "{{ (__controller_manifests + __agent_manifests | default([])) | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""


def helm(*args: str) -> str:
    result = subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def helm_template(values: dict[str, Any], tmp_path: Path, *extra: str) -> list[dict[str, Any]]:
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values))
    text = helm("template", "porter-lb", str(CHART), "-f", str(path), *extra)
    return [d for d in yaml.safe_load_all(text) if d]


def playbook(
    text: str,
    kubeconfig: Path,
    tmp_path: Path,
    *args: str,
    variables: dict[str, Any] | None = None,
    fails_with: str = "",
) -> dict[str, int]:
    """Run `text` as a playbook from the checkout (ansible.cfg finds porter.lb); its recap.
    With `fails_with`, the run must fail and its output contain that text."""
    book = tmp_path / f"play-{run_id()}.yml"
    book.write_text(text)
    extra = tmp_path / f"vars-{run_id()}.json"
    extra.write_text(
        json.dumps(
            {
                "controller_kubeconfig": str(kubeconfig),
                "agent_kubeconfig": str(kubeconfig),
                # No kubelet runs on this bed: no pod will ever be Ready to wait for.
                "controller_wait": False,
                "agent_wait": False,
                "ansible_python_interpreter": sys.executable,
                **(variables or {}),
            }
        )
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_CONFIG", "K8S_AUTH_KUBECONFIG")
    }
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-e", f"@{extra}", *args, str(book)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, "ANSIBLE_NOCOLOR": "1", "PATH": f"{BIN}:{env.get('PATH', '')}"},
        check=False,
    )
    if fails_with:
        assert result.returncode != 0, f"ansible-playbook did not fail:\n{result.stdout}"
        assert fails_with in " ".join(result.stdout.split()), result.stdout
    else:
        assert result.returncode == 0, f"ansible-playbook failed:\n{result.stdout}\n{result.stderr}"
    return recap(result.stdout)


def comparable(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sorted by kind, namespace and name, without Helm's hooks (the uninstall Job: the roles
    uninstall by their own tasks). No object holds a certificate (the controller makes it)."""
    out = [o for o in objects if "helm.sh/hook" not in o["metadata"].get("annotations", {})]
    for obj in out:
        assert obj["kind"] != "Secret", obj["metadata"]
        for hook in obj.get("webhooks", []):
            assert "caBundle" not in hook["clientConfig"], obj["metadata"]
    return sorted(
        out,
        key=lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]),
    )


# --- helm template output on the bed's API server ------------------------------------------


@pytest.mark.parametrize(
    "values",
    [{}, {"controller": {"speaker": "central"}, "agent": {"enabled": False}}],
    ids=["default", "central"],
)
def test_every_rendered_manifest_passes_a_server_side_dry_run(
    api_client: client.ApiClient, crds: list[str], values: dict[str, Any], tmp_path: Path
) -> None:
    namespace = f"plb-dry-{run_id()}"
    documents = helm_template({**values, "namespace": namespace}, tmp_path, "--include-crds")
    kinds = {d["kind"] for d in documents}
    assert {"CustomResourceDefinition", "Deployment", "ValidatingWebhookConfiguration"} <= kinds
    dynamic = DynamicClient(api_client)
    core = client.CoreV1Api(api_client)
    # Objects in the namespace can only be dry-run once it exists.
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        for doc in documents:
            resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
            answer = resource.server_side_apply(
                body=doc,
                name=doc["metadata"]["name"],
                namespace=doc["metadata"].get("namespace"),
                field_manager="porter-lb-test",
                force_conflicts=True,
                dry_run="All",
            )
            assert answer.metadata.name == doc["metadata"]["name"]
        # A dry run stores nothing.
        assert not client.AppsV1Api(api_client).list_namespaced_deployment(namespace).items
    finally:
        core.delete_namespace(namespace)


# --- the roles, on a control plane of their own ---------------------------------------------


@pytest.fixture(scope="module")
def own_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path_factory.mktemp("install-plane"))
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="module")
def own_client(own_plane: ControlPlane) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(own_plane.kubeconfig))


def porter_lb_objects(api: client.ApiClient, namespace: str) -> list[str]:
    """Every object porter-lb's roles make, found in the API server, as kind/name."""
    dynamic = DynamicClient(api)
    found = []
    cluster = [
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
    ]
    for api_version, kind in cluster:
        for item in dynamic.resources.get(api_version=api_version, kind=kind).get().items:
            name = item.metadata.name
            if name.startswith("porter-lb") or name.endswith("network.kubesphere.io"):
                found.append(f"{kind}/{name}")
    namespaced = [
        ("v1", "ServiceAccount"),
        ("v1", "Secret"),
        ("v1", "Service"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "DaemonSet"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("coordination.k8s.io/v1", "Lease"),
    ]
    for api_version, kind in namespaced:
        resource = dynamic.resources.get(api_version=api_version, kind=kind)
        for item in resource.get(namespace=namespace).items:
            if item.metadata.name.startswith("porter-lb"):
                found.append(f"{kind}/{namespace}/{item.metadata.name}")
    return sorted(found)


def namespace_phase(api: client.ApiClient, name: str) -> str:
    try:
        namespace = client.CoreV1Api(api).read_namespace(name)
    except client.ApiException as error:
        if error.status == 404:
            return "Gone"
        raise
    return "Terminating" if namespace.metadata.deletion_timestamp else "Active"


def test_check_mode_on_a_fresh_cluster_writes_nothing(
    own_plane: ControlPlane, own_client: client.ApiClient, tmp_path: Path
) -> None:
    namespace = f"plb-check-{run_id()}"
    variables = {"controller_namespace": namespace, "agent_namespace": namespace}
    recap = playbook(INSTALL, own_plane.kubeconfig, tmp_path, "--check", variables=variables)
    assert recap["failed"] == 0 and recap["changed"] > 0, recap
    assert porter_lb_objects(own_client, namespace) == []
    assert namespace_phase(own_client, namespace) == "Gone"


def test_roles_install_idempotently_and_uninstall_without_leftovers(
    own_plane: ControlPlane, own_client: client.ApiClient, tmp_path: Path
) -> None:
    namespace = f"plb-roles-{run_id()}"
    variables = {"controller_namespace": namespace, "agent_namespace": namespace}
    kubeconfig = own_plane.kubeconfig

    first = playbook(INSTALL, kubeconfig, tmp_path, variables=variables)
    assert first["changed"] > 0 and first["failed"] == 0, first
    installed = porter_lb_objects(own_client, namespace)
    for name in (
        "CustomResourceDefinition/eips.network.kubesphere.io",
        "ClusterRole/porter-lb-controller",
        "ClusterRole/porter-lb-agent",
        "ValidatingWebhookConfiguration/porter-lb",
        f"Deployment/{namespace}/porter-lb-controller",
        f"DaemonSet/{namespace}/porter-lb-agent",
        f"Service/{namespace}/porter-lb-webhook",
        f"Service/{namespace}/porter-lb-controller-metrics",
        f"Role/{namespace}/porter-lb-agent",
    ):
        assert name in installed
    extensions = client.ApiextensionsV1Api(own_client)
    for crd in CRD_DIR.glob("*.yaml"):
        (doc,) = load_manifests(crd)
        status = extensions.read_custom_resource_definition(doc["metadata"]["name"]).status
        assert {c.type: c.status for c in status.conditions}["Established"] == "True"
    webhook = client.AdmissionregistrationV1Api(own_client).read_validating_webhook_configuration(
        "porter-lb"
    )
    # No certificate from the role: the controller makes it (none runs on this bed).
    assert webhook.webhooks[0].client_config.ca_bundle is None
    assert not [o for o in installed if o.startswith("Secret/")]
    assert webhook.webhooks[0].client_config.service.namespace == namespace
    versions = {
        "deployment": client.AppsV1Api(own_client)
        .read_namespaced_deployment("porter-lb-controller", namespace)
        .metadata.resource_version
    }

    second = playbook(INSTALL, kubeconfig, tmp_path, variables=variables)
    assert second["changed"] == 0 and second["failed"] == 0, second
    checked = playbook(INSTALL, kubeconfig, tmp_path, "--check", variables=variables)
    assert checked["changed"] == 0 and checked["failed"] == 0, checked
    # Nothing was rewritten.
    deployment = client.AppsV1Api(own_client).read_namespaced_deployment(
        "porter-lb-controller", namespace
    )
    assert deployment.metadata.resource_version == versions["deployment"]
    assert porter_lb_objects(own_client, namespace) == installed

    # What a running porter-lb leaves behind: a Service holding its finalizer (beside someone
    # else's), an Eip, a heartbeat Lease.
    core = client.CoreV1Api(own_client)
    core.create_namespace({"metadata": {"name": f"{namespace}-apps"}})
    core.create_namespaced_service(
        f"{namespace}-apps",
        {
            "metadata": {"name": "web", "finalizers": ["example.com/keep", FINALIZER]},
            "spec": {
                "type": "LoadBalancer",
                "loadBalancerClass": "porter-lb.io/porter-lb",
                "ports": [{"port": 80}],
            },
        },
    )
    client.CustomObjectsApi(own_client).create_cluster_custom_object(
        "network.kubesphere.io",
        "v1alpha2",
        "eips",
        {
            "apiVersion": "network.kubesphere.io/v1alpha2",
            "kind": "Eip",
            "metadata": {"name": "pool"},
            "spec": {"address": "192.0.2.0/28"},
        },
    )
    client.CoordinationV1Api(own_client).create_namespaced_lease(
        namespace,
        {
            "metadata": {"name": "porter-lb-node-n1", "labels": {"porter-lb.io/heartbeat": "true"}},
            "spec": {"holderIdentity": "n1"},
        },
    )

    removed = playbook(UNINSTALL, kubeconfig, tmp_path, variables=variables)
    assert removed["changed"] > 0 and removed["failed"] == 0, removed
    assert porter_lb_objects(own_client, namespace) == []
    service = core.read_namespaced_service("web", f"{namespace}-apps")
    assert service.metadata.finalizers == ["example.com/keep"]
    # No Eip is left (the CRD went with them), and the Namespace is being deleted (the bed has
    # no namespace controller to finish it; a cluster removes it and the Events in it).
    dynamic = DynamicClient(own_client)
    with pytest.raises(NotFoundError):
        dynamic.resources.get(
            api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
        ).get(name="eips.network.kubesphere.io")
    wait_for(
        lambda: namespace_phase(own_client, namespace) in ("Terminating", "Gone"),
        30,
        f"namespace {namespace} deleted",
    )
    again = playbook(UNINSTALL, kubeconfig, tmp_path, variables=variables)
    assert again["failed"] == 0, again


@pytest.mark.parametrize("case", ["defaults", "every-variable-set", "central"])
def test_roles_render_what_helm_template_renders(
    own_plane: ControlPlane, case: str, tmp_path: Path
) -> None:
    out = tmp_path / "rendered.json"
    variables: dict[str, Any] = {"out": str(out)}
    values: dict[str, Any] = {}
    if case != "defaults":
        variables |= ROLE_VARIABLES
        values = json.loads(json.dumps(CHART_VALUES))
    if case == "central":
        variables |= {"controller_speaker": "central", "with_agent": False}
        values["controller"]["speaker"] = "central"
        values["agent"]["enabled"] = False
    playbook(RENDER, own_plane.kubeconfig, tmp_path, variables=variables)
    from_roles = json.loads(out.read_text())
    from_helm = helm_template(values, tmp_path)
    assert comparable(from_roles) == comparable(from_helm)
    # The CRDs: the chart's crds/ are the files the controller role applies.
    crds = [
        d
        for d in helm_template({}, tmp_path, "--include-crds")
        if d["kind"] == "CustomResourceDefinition"
    ]
    role_crds = [doc for path in sorted(CRD_DIR.glob("*.yaml")) for doc in load_manifests(path)]
    assert sorted(crds, key=lambda d: d["metadata"]["name"]) == sorted(
        role_crds, key=lambda d: d["metadata"]["name"]
    )


# --- the RBAC the roles install is enough for the runtime ------------------------------------


def service_account_kubeconfig(
    api: client.ApiClient, admin: Path, namespace: str, account: str, path: Path
) -> Path:
    """A kubeconfig acting as `account` (a TokenRequest token), as its pod would."""
    token = client.CoreV1Api(api).create_namespaced_service_account_token(
        account, namespace, {"spec": {"expirationSeconds": 3600}}
    )
    kubeconfig = yaml.safe_load(admin.read_text())
    for user in kubeconfig["users"]:
        user["user"] = {"token": token.status.token}
    path.write_text(yaml.safe_dump(kubeconfig))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("speaker", ["none", "central"])
def test_runtime_works_under_the_installed_rbac(  # noqa: PLR0917 - fixtures
    speaker: str,
    own_plane: ControlPlane,
    own_client: client.ApiClient,
    topology: Topology,
    start_gobgpd: Callable[[str], Gobgpd],
    tmp_path: Path,
) -> None:
    """`porter-lb controller` and `porter-lb agent` (host rules and layer 2 on, as the
    DaemonSet runs it) — or, central, the controller with its speaker and no agent —
    authenticated as the roles' ServiceAccounts: an IP is allocated and published, the leader
    Lease (and the agent's heartbeat Lease) are written, the speaker reports its BGP session
    in the BgpPeer status, Events are recorded, and no request is forbidden."""
    namespace = f"plb-rbac-{run_id()}"
    apps = f"{namespace}-apps"
    variables = {
        "controller_namespace": namespace,
        "agent_namespace": namespace,
        "controller_speaker": speaker,
    }
    if speaker == "central":
        playbook(INSTALL_CONTROLLER, own_plane.kubeconfig, tmp_path, variables=variables)
        # The agent role refuses to join a central speaker.
        playbook(
            INSTALL,
            own_plane.kubeconfig,
            tmp_path,
            variables=variables,
            fails_with="runs the central speaker",
        )
    else:
        playbook(INSTALL, own_plane.kubeconfig, tmp_path, variables=variables)
    node = topology.nodes[0]
    core = client.CoreV1Api(own_client)
    custom = client.CustomObjectsApi(own_client)
    processes: list[Daemon] = []
    try:
        core.create_node(objects.node(node.name))
        core.patch_node_status(node.name, objects.node_status(address=node.address))
        gobgpd = start_gobgpd(node.netns)
        central = ["--speaker", "central", "--gobgp", gobgpd.target, "--router-id", node.address]
        controller = Daemon(
            "controller",
            [
                sys.executable,
                "-m",
                "porter_lb",
                "controller",
                "--kubeconfig",
                str(
                    service_account_kubeconfig(
                        own_client,
                        own_plane.kubeconfig,
                        namespace,
                        "porter-lb-controller",
                        tmp_path / "controller.kubeconfig",
                    )
                ),
                "--namespace",
                namespace,
                "--log-format",
                "text",
                "--webhook-secret",
                "porter-lb-webhook-tls",
                *(central if speaker == "central" else []),
            ],
            tmp_path / "controller.log",
        ).start()
        processes.append(controller)
        if speaker == "none":
            processes.append(
                Daemon(
                    "agent",
                    Agent(
                        node=node.name,
                        gobgp_target=gobgpd.target,
                        kubeconfig=service_account_kubeconfig(
                            own_client,
                            own_plane.kubeconfig,
                            namespace,
                            "porter-lb-agent",
                            tmp_path / "agent.kubeconfig",
                        ),
                        workdir=tmp_path,
                        namespace=namespace,
                        extra_args=("--netns", node.netns, "--host-rules", "local", "--layer2"),
                    ).argv(),
                    tmp_path / "agent.log",
                ).start()
            )

        group = ("network.kubesphere.io", "v1alpha2")
        custom.create_cluster_custom_object(*group, "bgpconfs", objects.bgp_conf(NODE_ASN))
        custom.create_cluster_custom_object(
            *group, "bgppeers", objects.bgp_peer("router", topology.router_address)
        )
        custom.create_cluster_custom_object(
            *group, "eips", objects.eip("bgp", "203.0.113.0/29", default=True)
        )
        custom.create_cluster_custom_object(
            *group, "eips", objects.eip("l2", "192.0.2.64/29", layer2_interface="eth0")
        )
        core.create_namespace({"metadata": {"name": apps}})
        core.create_namespaced_service(apps, objects.load_balancer_service("web", apps))
        client.DiscoveryV1Api(own_client).create_namespaced_endpoint_slice(
            apps, objects.endpoint_slice("web-1", apps, "web", [node.name])
        )

        def alive() -> None:
            for daemon in processes:
                daemon.check_running()

        def ingress() -> str | None:
            alive()
            status = core.read_namespaced_service_status("web", apps).status
            found = status.load_balancer.ingress if status.load_balancer else None
            return found[0].ip if found else None

        assert wait_for(ingress, 60, "the Service's IP").startswith("203.0.113.")

        def peer_status() -> dict[str, Any] | None:
            alive()
            peer = custom.get_cluster_custom_object(*group, "bgppeers", "router")
            return (peer.get("status") or {}).get("nodesPeerStatus", {}).get(key)

        key = node.name if speaker == "none" else "central"
        wait_for(peer_status, 60, f"BgpPeer status of {key}")
        leases = client.CoordinationV1Api(own_client)

        def lease(name: str) -> str | None:
            alive()
            return leases.read_namespaced_lease(name, namespace).spec.holder_identity

        wait_for(lambda: lease("porter-lb-controller"), 30, "the leader Lease")

        def certificate() -> bool:
            alive()
            data = core.read_namespaced_secret("porter-lb-webhook-tls", namespace).data
            hooks = client.AdmissionregistrationV1Api(own_client)
            bundle = hooks.read_validating_webhook_configuration("porter-lb").webhooks[0]
            return bool(data) and bundle.client_config.ca_bundle == data["ca.crt"]

        wait_for(certificate, 30, "the webhook certificate and its caBundle, by the leader")
        if speaker == "none":
            wait_for(lambda: lease(f"porter-lb-node-{node.name}"), 30, "the heartbeat Lease")
        wait_for(lambda: core.list_namespaced_event(apps).items, 30, "an Event on the Service")
        for daemon in processes:
            log = daemon.log.read_text()
            assert not re.search(r"\b403\b|[Ff]orbidden", log), f"{daemon.name}:\n{log[-3000:]}"
    finally:
        for daemon in processes:
            daemon.stop(10)
        # The controller is gone: the uninstall itself must release the Service's finalizer.
        playbook(UNINSTALL, own_plane.kubeconfig, tmp_path, variables=variables)
        core.delete_node(node.name)
    service = core.read_namespaced_service("web", apps)
    assert not service.metadata.finalizers
