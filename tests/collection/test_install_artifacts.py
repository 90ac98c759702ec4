"""Install artifacts without a cluster: the chart and the static manifests (deploy/) are
generated, lint and render; the roles' variables are the chart's values; the Containerfiles
name files and programs that exist.

The roles against a real API server, and role == helm template, are in
tests/bed/test_install.py; all three install paths on a real cluster in tests/cluster/.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts/porter-lb"
ROLES = REPO / "ansible_collections/porter/lb/roles"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools/chart"))

import generate  # noqa: E402

from ansible_collections.porter.lb.plugins.plugin_utils import (  # noqa: E402
    install_manifests as description,
)
from porter_lab.helm import helm_binary  # noqa: E402

# Role variable -> chart value (dotted path). The roles' vars/main.yml must say the same.
ROLE_VALUES = {
    "controller": {
        "controller_namespace": "namespace",
        "controller_load_balancer_class": "loadBalancerClass",
        "controller_log_level": "logLevel",
        "controller_image_pull_policy": "imagePullPolicy",
        "controller_image": "controller.image",
        "controller_replicas": "controller.replicas",
        "controller_speaker": "controller.speaker",
        "controller_host_network": "controller.hostNetwork",
        "controller_metrics_port": "controller.metricsPort",
        "controller_webhook_port": "controller.webhookPort",
        "controller_webhook_certificate_days": "controller.webhookCertificateDays",
        "controller_webhook_certificate_renew_days": "controller.webhookCertificateRenewDays",
        "controller_webhook_ca_overlap_minutes": "controller.webhookCaOverlapMinutes",
        "controller_node_selector": "controller.nodeSelector",
        "controller_tolerations": "controller.tolerations",
        "controller_resources": "controller.resources",
    },
    "agent": {
        "agent_namespace": "namespace",
        "agent_load_balancer_class": "loadBalancerClass",
        "agent_log_level": "logLevel",
        "agent_image_pull_policy": "imagePullPolicy",
        "agent_image": "agent.image",
        "agent_host_rules": "agent.hostRules",
        "agent_metrics_port": "agent.metricsPort",
        "agent_heartbeat_interval": "agent.heartbeatInterval",
        "agent_heartbeat_timeout": "agent.heartbeatTimeout",
        "agent_node_selector": "agent.nodeSelector",
        "agent_tolerations": "agent.tolerations",
        "agent_resources": "agent.resources",
    },
}


def helm(*args: str) -> str:
    result = subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def value_at(values: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        values = values[part]
    return values


def test_committed_chart_and_static_manifests_are_a_fresh_generation() -> None:
    stale = generate.differences()
    assert not stale, f"differs from tools/chart/generate.py's output: {stale}"


def test_static_manifest_is_crds_then_the_default_install() -> None:
    """deploy/porter-lb.yaml: the CRDs, then what the roles apply with their defaults, in the
    same order (a rule: CRDs first so the rest can name them; nothing else, no Secret)."""
    documents = [d for d in yaml.safe_load_all((REPO / "deploy/porter-lb.yaml").read_text()) if d]
    kinds = [d["kind"] for d in documents]
    assert kinds[:3] == ["CustomResourceDefinition"] * 3
    values = description.merged_values({})
    expected = description.manifests(values, "controller") + description.manifests(values, "agent")
    assert documents[3:] == expected
    assert "Secret" not in kinds
    uninstall = [
        d for d in yaml.safe_load_all((REPO / "deploy/porter-lb-uninstall.yaml").read_text()) if d
    ]
    assert uninstall == description.manifests(values, "uninstall")


def test_chart_runs_the_uninstall_job_as_a_pre_delete_hook() -> None:
    documents = [d for d in yaml.safe_load_all(helm("template", "porter-lb", str(CHART))) if d]
    hooks = [d for d in documents if "helm.sh/hook" in d["metadata"].get("annotations", {})]
    assert {d["kind"] for d in hooks} == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Job",
    }
    for hook in hooks:
        annotations = hook["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-delete"
        # The Job runs after its RBAC exists.
        weight = int(annotations["helm.sh/hook-weight"])
        assert weight > -10 if hook["kind"] == "Job" else weight == -10


def test_helm_lint_passes() -> None:
    output = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in output


@pytest.mark.parametrize("speaker", ["none", "central"])
def test_helm_template_renders_every_object(speaker: str) -> None:
    agent = "true" if speaker == "none" else "false"
    text = helm(
        "template",
        "porter-lb",
        str(CHART),
        "--set",
        f"controller.speaker={speaker}",
        "--set",
        f"agent.enabled={agent}",
    )
    documents = [d for d in yaml.safe_load_all(text) if d]
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in documents)
    assert "Deployment/porter-lb-controller" in kinds
    assert ("DaemonSet/porter-lb-agent" in kinds) == (speaker == "none")
    assert "ValidatingWebhookConfiguration/porter-lb" in kinds
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    containers = [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    assert containers == (
        ["controller", "webhook", "gobgpd"] if speaker == "central" else ["controller", "webhook"]
    )


def test_helm_refuses_a_central_speaker_beside_agents() -> None:
    result = subprocess.run(
        [str(helm_binary()), "template", "x", str(CHART), "--set", "controller.speaker=central"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert description.CENTRAL_WITH_AGENT in result.stderr


def test_helm_refuses_an_unknown_speaker() -> None:
    result = subprocess.run(
        [str(helm_binary()), "template", "x", str(CHART), "--set", "controller.speaker=bgp"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "controller/speaker" in result.stderr


@pytest.mark.parametrize("role", ["controller", "agent"])
def test_role_variables_are_the_chart_values(role: str) -> None:
    """Defaults, argument specs and vars/main.yml agree with the chart's values, name by name."""
    defaults = yaml.safe_load((ROLES / role / "defaults/main.yml").read_text())
    spec = yaml.safe_load((ROLES / role / "meta/argument_specs.yml").read_text())
    options = spec["argument_specs"]["main"]["options"]
    assert set(options) == set(defaults), "argument_specs and defaults name other variables"
    for name, default in defaults.items():
        assert options[name].get("default") == default, f"{name}: spec default != defaults"
    mapped = yaml.safe_load((ROLES / role / "vars/main.yml").read_text())[f"__{role}_values"]
    for variable, path in ROLE_VALUES[role].items():
        assert defaults[variable] == value_at(description.DEFAULT_VALUES, path), variable
        assert value_at(mapped, path) == "{{ " + variable + " }}", variable


def test_agent_pod_runs_with_host_rules_layer2_and_only_net_caps() -> None:
    values = description.merged_values({})
    objects = description.manifests(values, "agent")
    (daemonset,) = [o for o in objects if o["kind"] == "DaemonSet"]
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    agent, gobgpd = pod["containers"]
    assert "--layer2" in agent["args"]
    assert agent["args"][agent["args"].index("--host-rules") + 1] == "local"
    assert agent["securityContext"]["capabilities"] == {
        "drop": ["ALL"],
        "add": ["NET_ADMIN", "NET_RAW"],
    }
    assert gobgpd["securityContext"]["capabilities"]["add"] == ["NET_BIND_SERVICE"]


def _rule_objects(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [rule for o in objects if o["kind"] == kind for rule in o["rules"]]


def _rules(objects: list[dict[str, Any]], kind: str) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for o in objects
        if o["kind"] == kind
        for rule in o["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_rbac_grants_exactly_what_the_runtime_calls() -> None:
    none = description.manifests(description.merged_values({}), "controller")
    central = description.manifests(
        description.merged_values({"controller": {"speaker": "central"}}), "controller"
    )
    controller = {
        ("", "services", "get"),
        ("", "services", "list"),
        ("", "services", "watch"),
        ("", "services", "patch"),
        ("", "services/status", "patch"),
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
        ("network.kubesphere.io", "eips", "list"),
        ("network.kubesphere.io", "eips", "watch"),
        ("network.kubesphere.io", "eips/status", "update"),
        ("", "events", "create"),
        ("", "events", "get"),
        ("", "events", "patch"),
        # The webhook certificate: its caBundle (porter_lb.webhook.tls).
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations", "get"),
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations", "update"),
    }
    speaker = {
        ("", "services", "list"),
        ("", "services", "watch"),
        ("", "nodes", "list"),
        ("", "nodes", "watch"),
        ("discovery.k8s.io", "endpointslices", "list"),
        ("discovery.k8s.io", "endpointslices", "watch"),
        *(
            ("network.kubesphere.io", r, v)
            for r in ("eips", "bgpconfs", "bgppeers")
            for v in ("list", "watch")
        ),
        ("network.kubesphere.io", "bgppeers/status", "patch"),
    }
    assert _rules(none, "ClusterRole") == controller
    assert _rules(central, "ClusterRole") == controller | speaker
    leases = {("coordination.k8s.io", "leases", v) for v in ("get", "update", "create")}
    certificate = {("", "secrets", v) for v in ("get", "update", "create")}
    assert _rules(none, "Role") == leases | certificate
    assert _rules(central, "Role") == leases | certificate | {
        ("", "secrets", "list"),
        ("", "secrets", "watch"),
    }
    agent = description.manifests(description.merged_values({}), "agent")
    events = {("", "events", v) for v in ("create", "get", "patch")}
    assert _rules(agent, "ClusterRole") == speaker | events
    assert _rules(agent, "Role") == {
        *(
            ("coordination.k8s.io", "leases", v)
            for v in ("get", "create", "patch", "list", "watch")
        ),
        ("", "secrets", "list"),
        ("", "secrets", "watch"),
    }
    # The webhook configuration and the certificate Secret by name only.
    for objects, kind, resource, name in (
        (none, "ClusterRole", "validatingwebhookconfigurations", description.WEBHOOK_CONFIGURATION),
        (none, "Role", "secrets", description.WEBHOOK_SECRET),
    ):
        for rule in _rule_objects(objects, kind):
            if resource in rule["resources"] and set(rule["verbs"]) - {"create"}:
                assert rule["resourceNames"] == [name], rule
    # Nothing cluster-wide on Secrets, and no delete anywhere.
    cluster_wide = _rules(none + central + agent, "ClusterRole")
    assert not [r for r in cluster_wide if r[1] == "secrets"]
    every = cluster_wide | _rules(none + central + agent, "Role")
    assert not [r for r in every if r[2] in ("delete", "deletecollection", "*")]


def test_the_uninstall_job_may_do_only_what_porter_lb_uninstall_does() -> None:
    objects = description.manifests(description.merged_values({}), "uninstall")
    assert _rules(objects, "ClusterRole") == {
        ("", "services", "list"),
        ("", "services", "patch"),
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations", "delete"),
    }
    assert _rules(objects, "Role") == {
        ("apps", "deployments/scale", "patch"),
        ("", "pods", "list"),
        ("", "secrets", "delete"),
    }
    for rule in _rule_objects(objects, "ClusterRole") + _rule_objects(objects, "Role"):
        if set(rule["verbs"]) & {"delete", "patch"} and rule["resources"] != ["services"]:
            assert rule.get("resourceNames"), rule  # a delete or patch by name only
    (job,) = [o for o in objects if o["kind"] == "Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"][:3] == ["uninstall", "--namespace", "porter-lb-system"]


# --- Containerfiles: what can be checked without building them -------------------------------

CONTAINERFILES = sorted((REPO / "containers").glob("*.Containerfile"))


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def console_scripts() -> set[str]:
    project = tomllib.loads((REPO / "runtime/pyproject.toml").read_text())["project"]
    return set(project["scripts"])


def test_there_are_both_containerfiles() -> None:
    assert [p.name for p in CONTAINERFILES] == ["agent.Containerfile", "controller.Containerfile"]


@pytest.mark.parametrize("path", CONTAINERFILES, ids=lambda p: p.name)
def test_containerfile_copies_files_that_exist(path: Path) -> None:
    copies = [args for word, args in instructions(path) if word == "COPY"]
    assert copies
    for args in copies:
        if args.startswith("--from="):
            continue
        *sources, _destination = args.split()
        for source in sources:
            assert (REPO / source).exists(), f"{path.name}: COPY source {source} does not exist"
    # The symlinked shared module must arrive where the runtime's link points.
    link = REPO / "runtime/src/porter_lb/model/addresses.py"
    target = link.resolve().relative_to(REPO)
    assert any(str(target) in args for args in copies), f"{path.name}: {target} not copied"


@pytest.mark.parametrize("path", CONTAINERFILES, ids=lambda p: p.name)
def test_containerfile_runs_programs_it_installs(path: Path) -> None:
    steps = instructions(path)
    (entrypoint,) = [json.loads(a) for w, a in steps if w == "ENTRYPOINT"]
    (command,) = [json.loads(a) for w, a in steps if w == "CMD"]
    assert entrypoint == ["porter-lb"] and entrypoint[0] in console_scripts()
    component = path.name.split(".")[0]
    assert command == [component]
    runs = " ".join(a for w, a in steps if w == "RUN")
    assert "pip install --no-cache-dir ./runtime" in runs
    final_stage = path.read_text().rsplit("FROM ", 1)[1]
    # gobgpd, and the gobgp CLI its probes run, from the stage that builds tools/gobgp's pin.
    copied = re.search(r"^COPY --from=gobgp ([^\n]*) /usr/local/bin/$", final_stage, re.MULTILINE)
    assert copied, "gobgpd not copied from the gobgp stage"
    assert {Path(source).name for source in copied.group(1).split()} == {"gobgpd", "gobgp"}
    # Every command the manifests run is a console script or gobgpd.
    values = description.merged_values({"controller": {"speaker": "central"}})
    objects = description.manifests(values, component)
    if component == "controller":
        objects += description.manifests(values, "uninstall")
    pods = [
        o["spec"]["template"]["spec"]
        for o in objects
        if o["kind"] in ("Deployment", "DaemonSet", "Job")
    ]
    # porter-lb's console scripts, and gobgpd (through sh, which clears a stale socket first).
    commands = {
        c["command"][0] if c["command"][0] != "sh" else c["command"][2].split("exec ")[1].split()[0]
        for pod in pods
        for c in pod["containers"]
    }
    assert commands <= console_scripts() | {"gobgpd"}
    # Every subcommand the manifests pass exists in the runtime's CLI.
    for pod in pods:
        for container in pod["containers"]:
            if container["command"] == ["porter-lb"]:
                subprocess.run(
                    [
                        str(Path(sys.executable).parent / "porter-lb"),
                        container["args"][0],
                        "--help",
                    ],
                    check=True,
                    capture_output=True,
                )


# --- the webhook configuration ------------------------------------------------------------


def test_webhook_configuration_is_the_documented_sketch() -> None:
    """roles/controller/files/webhook.yaml (the reviewed sketch docs/validation.md points to)
    is what the description renders (without a caBundle: the controller sets it)."""
    (sketch,) = yaml.safe_load_all((ROLES / "controller/files/webhook.yaml").read_text())
    objects = description.manifests(description.merged_values({}), "controller")
    (rendered,) = [o for o in objects if o["kind"] == "ValidatingWebhookConfiguration"]
    assert rendered == sketch
