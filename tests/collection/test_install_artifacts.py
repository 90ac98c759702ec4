"""Install artifacts without a cluster: the chart is generated, lints and renders; the roles'
variables are the chart's values; the Containerfiles name files and programs that exist.

The roles against a real API server, and role == helm template, are in
tests/bed/test_install.py.
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


def test_committed_chart_is_a_fresh_generation() -> None:
    stale = generate.differences()
    assert not stale, f"charts/porter-lb differs from tools/chart/generate.py's output: {stale}"


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
    certificate = {"ca.crt": "", "tls.crt": "", "tls.key": ""}
    none = description.manifests(description.merged_values({}), "controller", certificate)
    central = description.manifests(
        description.merged_values({"controller": {"speaker": "central"}}), "controller", certificate
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
    assert _rules(none, "Role") == leases
    assert _rules(central, "Role") == leases | {("", "secrets", "list"), ("", "secrets", "watch")}
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
    # Nothing cluster-wide on Secrets, and no delete anywhere.
    cluster_wide = _rules(none + central + agent, "ClusterRole")
    assert not [r for r in cluster_wide if r[1] == "secrets"]
    every = cluster_wide | _rules(none + central + agent, "Role")
    assert not [r for r in every if r[2] in ("delete", "deletecollection", "*")]


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
    link = REPO / "runtime/src/porter_lb/addresses.py"
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
    assert re.search(r"apt-get install [^\n]*\bgobgpd\b", final_stage), "gobgpd not installed"
    # Every command the manifests run is a console script or gobgpd.
    values = description.merged_values({"controller": {"speaker": "central"}})
    certificate = {"ca.crt": "", "tls.crt": "", "tls.key": ""}
    objects = description.manifests(values, component, certificate)
    pods = [
        o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Deployment", "DaemonSet")
    ]
    commands = {c["command"][0] for pod in pods for c in pod["containers"]}
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


# --- the webhook certificate the controller role makes or keeps ------------------------------


def test_webhook_certificate_is_kept_while_good_and_replaced_otherwise() -> None:
    from ansible_collections.porter.lb.plugins.plugin_utils import webhook_certificate as tls

    names = description.webhook_dns_names("porter-lb-system")
    made = tls.certificate({}, names, days=365, renew_days=30)
    assert tls.problem(made, names, 30) is None
    assert tls.certificate(made, names, days=365, renew_days=30) == made
    other = description.webhook_dns_names("elsewhere")
    assert "not" in tls.problem(made, other, 30)
    assert tls.certificate(made, other)["ca.crt"] != made["ca.crt"]
    assert "within 400 days" in tls.problem(made, names, 400)
    assert tls.problem({**made, "tls.key": tls.new_certificate(names, 1)["tls.key"]}, names, 30)
    assert tls.problem({**made, "ca.crt": tls.new_certificate(names, 1)["ca.crt"]}, names, 30)
    assert tls.problem({**made, "tls.crt": "bm90IGEgY2VydA=="}, names, 30)
    assert tls.problem({}, names, 30) == "no stored certificate"


def test_webhook_configuration_is_the_documented_sketch() -> None:
    """roles/controller/files/webhook.yaml (the reviewed sketch docs/validation.md points to)
    is what the description renders, but for the caBundle it fills in."""
    (sketch,) = yaml.safe_load_all((ROLES / "controller/files/webhook.yaml").read_text())
    certificate = {"ca.crt": "Q0E=", "tls.crt": "", "tls.key": ""}
    objects = description.manifests(description.merged_values({}), "controller", certificate)
    (rendered,) = [o for o in objects if o["kind"] == "ValidatingWebhookConfiguration"]
    assert rendered["webhooks"][0]["clientConfig"].pop("caBundle") == "Q0E="
    assert rendered == sketch
