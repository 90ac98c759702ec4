"""The AWX execution environment, built here (porter_lab.ee: ansible-builder on a local base,
with the collection tarball and the runtime wheel) and used as AWX uses it: the job templates'
playbooks run by `ansible-runner` inside the image, against the session's real cluster, with
the Kubernetes credential as AWX injects it (`K8S_AUTH_HOST`, `K8S_AUTH_API_KEY` of a
ServiceAccount token, `K8S_AUTH_SSL_CA_CERT`, `K8S_AUTH_VERIFY_SSL`), the Machine credential's
SSH key (`env/ssh_key`: ansible-runner's ssh-agent), the template's extra variables and the
survey's answers as extra vars, and the job types Check and Run with Show Changes.

Expected, "add an address pool": a Check job with Show Changes reports the one change and
shows it, and writes nothing; a Run job creates exactly the Eip the survey describes
(changed 1); the same Run again changes nothing (changed 0), and so does the Check.

Expected, "site rollout" and "audit the fabric", with a top-of-rack router that the job
reaches over SSH (a systemd host in its own namespace on the node LAN, porter_lab.systemdhost):
the rollout configures BIRD there under systemd, installs porter-lb in the cluster, makes the
pool and the BGP objects and audits; then the router's kernel FIB holds the Service's /32 with
the nodes that run its pods as next hops (externalTrafficPolicy Local), bird is enabled and
active; a second rollout changes nothing; the audit job reports the router in sync, and fails
naming the prefix once a node's session on the router is disabled.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from porter_lab import ee, netns, systemdhost
from porter_lab.clusterbed import POOL as APP_POOL
from porter_lab.clusterbed import POOL_RANGE as APP_POOL_RANGE
from porter_lab.clusterbed import ClusterBed
from porter_lab.paths import REPO
from porter_lab.topology import EIP_POOL, NODE_ASN, NODE_NET
from porter_lab.waiting import wait_for

TEMPLATES = json.loads((REPO / "docs/awx/job_templates.json").read_text())["job_templates"]
ACCOUNT = "awx-job"
CRDS = REPO / "ansible_collections/porter/lb/roles/controller/files/crds"
POOL = "awx-survey-pool"
TOR = "tor"  # the router's inventory name and its BgpPeer's
# on the node LAN, beside the bed's own router (.1) and the control plane (.2)
TOR_ADDRESS = f"{NODE_NET}.3"
TOR_ASN = 65100
APP, APP_NAMESPACE = "awx-web", "awx-app"


def template(playbook: str) -> dict:
    return next(t for t in TEMPLATES if t["playbook"] == playbook)


@pytest.fixture(scope="module")
def image() -> str:
    """The execution environment: present when scripts/setup.sh built it; built otherwise."""
    return ee.build(log=lambda line: None)


@pytest.fixture(scope="module")
def crds(bed: ClusterBed) -> Iterator[None]:
    """porter-lb's CRDs (the job manages an Eip; the controller is not needed for that),
    removed again if this module brought them."""
    present = bed.kubectl("get", "crd", "eips.network.kubesphere.io", "--ignore-not-found")
    bed.kubectl("apply", "--server-side", "-f", str(CRDS))
    bed.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))
    yield
    if not present.strip():
        bed.kubectl("delete", "-f", str(CRDS), "--ignore-not-found")


@pytest.fixture(scope="module")
def credential(bed: ClusterBed) -> Iterator[dict[str, str]]:
    """What AWX's "OpenShift or Kubernetes API Bearer Token" credential puts in a job's
    environment: the API server as seen from the router's namespace, a ServiceAccount's token
    and the cluster's CA (the path inside the job's container)."""
    bed.kubectl("create", "serviceaccount", ACCOUNT, "-n", "default")
    bed.kubectl(
        "create",
        "clusterrolebinding",
        ACCOUNT,
        "--clusterrole=cluster-admin",
        f"--serviceaccount=default:{ACCOUNT}",
    )
    token = bed.kubectl("create", "token", ACCOUNT, "-n", "default", "--duration=1h").strip()
    yield {
        "K8S_AUTH_HOST": bed.cluster.plane.in_cluster_url,
        "K8S_AUTH_API_KEY": token,
        "K8S_AUTH_SSL_CA_CERT": "/runner/ca.crt",
        "K8S_AUTH_VERIFY_SSL": "True",
    }
    bed.kubectl("delete", "clusterrolebinding", ACCOUNT, "--ignore-not-found")
    bed.kubectl("delete", "serviceaccount", ACCOUNT, "-n", "default", "--ignore-not-found")


def private_data_dir(bed: ClusterBed, where: Path) -> Path:
    """An AWX job's private data dir: the project's playbooks (porter.lb and its dependencies
    come from the image), an inventory with the cluster's host and no connection settings,
    the CA of the credential."""
    data = where / "runner"
    shutil.copytree(REPO / "ansible_collections/porter/lb/playbooks", data / "project/playbooks")
    (data / "inventory").mkdir(parents=True)
    (data / "inventory/hosts.json").write_text(
        json.dumps(
            {
                "porter_lb_cluster": {
                    "hosts": {
                        "localhost": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": "/usr/bin/python3",
                        }
                    }
                }
            }
        )
    )
    shutil.copy(bed.cluster.plane.workdir / "pki/ca.crt", data / "ca.crt")
    return data


def test_add_pool_job_runs_in_the_execution_environment(
    bed: ClusterBed, image: str, crds: None, credential: dict[str, str], tmp_path: Path
) -> None:
    pools = template("playbooks/pools.yml")
    survey = {q["variable"] for q in pools["related"]["survey_spec"]["spec"]}
    answers = {
        "pool_name": POOL,
        "pool_address": "198.18.40.0/28",
        "pool_protocol": "bgp",
        "pool_interface": "",
        "eip_pools_wait": "false",
    }
    assert set(answers) == survey  # every question answered, nothing else
    extra_vars = (yaml.safe_load(pools["extra_vars"]) or {}) | answers
    data = private_data_dir(bed, tmp_path)
    netns = bed.topology.router_ns

    def job(*, check: bool) -> ee.JobResult:
        result = ee.run_job(
            image,
            data,
            pools["playbook"],
            netns=netns,
            extra_vars=extra_vars,
            env=credential,
            check=check,
            diff=True,
        )
        assert result.status == "successful" and result.failed() == 0, result.stdout
        return result

    try:
        checked = job(check=True)
        assert checked.changed() == 1, checked.stdout
        # Show Changes: the Eip it would make, as a diff (AWX's output keeps Ansible's colours)
        shown = re.sub(r"\x1b\[[0-9;]*m", "", checked.stdout)
        assert "+++ after" in shown and '"address": "198.18.40.0/28"' in shown, shown
        assert bed.kubectl("get", "eips", POOL, "--ignore-not-found").strip() == ""

        first = job(check=False)
        assert first.changed() == 1, first.stdout
        made = bed.get_json("eips", POOL)
        assert made["spec"]["address"] == "198.18.40.0/28"
        assert made["spec"]["protocol"] == "bgp"
        assert "interface" not in made["spec"]

        second = job(check=False)
        assert second.changed() == 0, second.stdout
        assert job(check=True).changed() == 0
        print(
            f"ansible-runner in {image}: check {checked.changed()} changed, "
            f"run {first.changed()}, again {second.changed()}"
        )
    finally:
        bed.kubectl("delete", "eips", POOL, "--ignore-not-found")


@pytest.fixture
def tor(bed: ClusterBed, tmp_path: Path) -> Iterator[tuple[systemdhost.SystemdHost, str, str]]:
    """A top-of-rack router the jobs reach over SSH: a systemd host in a namespace of its own,
    wired to the node LAN's bridge at TOR_ADDRESS. (host, its namespace, the private key)."""
    name = f"{bed.topology.prefix}tor"
    netns.add(name)
    try:
        netns.veth(bed.topology.router_ns, "to-tor", name, "eth0")
        netns.enslave(bed.topology.router_ns, "to-tor", "br0")
        netns.address(name, "eth0", f"{TOR_ADDRESS}/24")
        private, public = systemdhost.ssh_key_pair()
        with systemdhost.systemd_host(name, name, tmp_path / "tor", public) as host:
            yield host, name, private
    finally:
        netns.delete(name)


def site_inventory(bed: ClusterBed) -> dict:
    """What an AWX inventory holds for the site: the ToR over SSH (the Machine credential
    gives the key) with its BGP, and the cluster's host with porter-lb's images, the pool and
    the BGP objects. No kubeconfig anywhere: the Kubernetes credential is in the environment."""
    nodes = [{"name": n.name, "address": n.address, "as": NODE_ASN} for n in bed.topology.nodes]
    return {
        "bird_routers": {
            "hosts": {
                TOR: {
                    "ansible_host": TOR_ADDRESS,
                    "ansible_user": "root",
                    "ansible_python_interpreter": "/usr/bin/python3",
                    "bird_router_bgp": {
                        "local_as": TOR_ASN,
                        "router_id": TOR_ADDRESS,
                        "neighbors": nodes,
                        "pools": [EIP_POOL],
                        "merge_paths_limit": 16,
                    },
                    "porter_lb_audit": {"router": "bird", "bgp_peers": [TOR]},
                }
            }
        },
        "porter_lb_cluster": {
            "hosts": {
                "localhost": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": "/usr/bin/python3",
                    "controller_image": bed.built["controller"],
                    "agent_image": bed.built["agent"],
                    "eip_pools_list": [
                        {"name": APP_POOL, "address": APP_POOL_RANGE, "protocol": "bgp"}
                    ],
                    "eip_pools_wait": True,
                    "bgp_conf": {"as": NODE_ASN},
                    "bgp_peers": [
                        {
                            "name": TOR,
                            "conf": {"neighbor_address": TOR_ADDRESS, "peer_as": TOR_ASN},
                            "timers": {
                                "config": {
                                    "hold_time": "9",
                                    "keepalive_interval": "3",
                                    "connect_retry": "1",
                                }
                            },
                        }
                    ],
                    "bgp_peers_wait": False,
                }
            }
        },
    }


def test_site_rollout_and_audit_jobs_run_in_the_execution_environment(  # noqa: PLR0917 - fixtures
    bed: ClusterBed,
    image: str,
    crds: None,
    credential: dict[str, str],
    tor: tuple[systemdhost.SystemdHost, str, str],
    tmp_path: Path,
) -> None:
    host, tor_ns, key = tor
    data = private_data_dir(bed, tmp_path)
    (data / "inventory/hosts.json").write_text(json.dumps(site_inventory(bed)))
    # AWX runs jobs with host key checking off (its default setting)
    env = credential | {"ANSIBLE_HOST_KEY_CHECKING": "False"}

    def job(playbook: str, answers: dict | None = None, *, check: bool = False) -> ee.JobResult:
        found = [t for t in TEMPLATES if t["playbook"] == playbook]
        extra_vars = (yaml.safe_load(found[0]["extra_vars"]) or {}) if found else {}
        return ee.run_job(
            image,
            data,
            playbook,
            netns=bed.topology.router_ns,
            extra_vars=extra_vars | (answers or {}),
            env=env,
            ssh_key=key,
            check=check,
            diff=bool(found and found[0]["diff_mode"]),
            timeout=900,
        )

    # the Service exists first, pending, as on a cluster porter-lb comes to
    bed.deploy_app(APP, APP_NAMESPACE, replicas=2)
    try:
        first = job("playbooks/site.yml")
        assert first.status == "successful" and first.failed() == 0, first.stdout
        assert first.changed() > 0
        ip = bed.service_ip(APP, APP_NAMESPACE, timeout=120)

        # the rule (externalTrafficPolicy Local): the nodes that run a Ready pod are next hops
        def fib_matches() -> set[str] | None:
            want = bed.ready_node_addresses(APP_NAMESPACE, APP)
            have = netns.next_hops(tor_ns, f"{ip}/32")
            return have if want and have == want else None

        hops = wait_for(fib_matches, 60, f"{ip}/32 in the ToR's FIB via the app's nodes")
        assert host.exec("systemctl", "is-enabled", "bird").strip() == "enabled"
        assert host.exec("systemctl", "is-active", "bird").strip() == "active"

        second = job("playbooks/site.yml")
        assert second.status == "successful", second.stdout
        assert second.changed() == 0, second.stdout

        questions = template("playbooks/verify.yml")["related"]["survey_spec"]["spec"]
        assert {q["variable"] for q in questions} == {"porter_lb_audit_retries"}
        audited = job(
            "playbooks/verify.yml",
            {"porter_lb_audit_retries": 10, "porter_lb_audit_report": "/runner/audit.json"},
        )
        assert audited.status == "successful" and audited.changed() == 0, audited.stdout
        report = json.loads((data / "audit.json").read_text())[TOR]
        assert report["in_sync"] is True, report
        # one Service in the pool: one prefix wanted, and the router holds it with those hops
        assert report["counts"] == {
            "desired": 1,
            "observed": 1,
            "missing": 0,
            "stale": 0,
            "wrong_next_hops": 0,
        }, report

        # drift: the ToR drops one node's session, so the prefix loses that next hop
        dropped = sorted(hops)[0]
        node = next(n.name for n in bed.topology.nodes if n.address == dropped)
        host.exec("birdc", "disable", node)
        try:
            wait_for(
                lambda: dropped not in netns.next_hops(tor_ns, f"{ip}/32"),
                30,
                f"{dropped} gone from {ip}/32 on the ToR",
            )
            drifted = job("playbooks/verify.yml", {"porter_lb_audit_retries": 1})
            assert drifted.status == "failed", drifted.stdout
            assert f"{ip}/32" in drifted.stdout and "routes drift" in drifted.stdout, drifted.stdout
        finally:
            host.exec("birdc", "enable", node)
        print(
            f"site rollout in {image}: changed {first.changed()}, again {second.changed()}; "
            f"audit in sync, {ip}/32 via {sorted(hops)}; drift fails the audit job"
        )
    finally:
        removed = job("playbooks/uninstall.yml", {"porter_lb_remove_crds": True})
        bed.kubectl("delete", "namespace", APP_NAMESPACE, "--ignore-not-found", timeout=180)
        assert removed.status == "successful", removed.stdout
