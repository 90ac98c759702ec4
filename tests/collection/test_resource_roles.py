"""The declarative roles porter.lb.eip_pools and porter.lb.bgp through ansible-playbook, against
the bed's real kube-apiserver with porter-lb's CRDs: applied twice (the second run changes
nothing, read from the PLAY RECAP), check mode on fresh names stores nothing, a bad item fails
naming the field before anything is applied, prune deletes only the role's own unlisted Eips.

porter.lb.comware_switch is run with comware_switch_state=rendered only (no device): it is NOT
run against a switch here, nor is its `save force` handler."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from porter_lab import objects
from porter_lab.ansible_run import BIN, environment, recap, run_playbook
from porter_lab.controlplane import ControlPlane
from porter_lab.paths import REPO
from porter_lab.topology import run_id
from porter_lb.kube.api import KubeAPI

PASSWORD = "r0le-md5-pw"  # must never appear in any output
SECRET_NAMESPACE = "porter-lb-system"
SECRETS = f"{objects.NAMESPACES}/{SECRET_NAMESPACE}/secrets"
COMWARE_FIXTURES = REPO / "ansible_collections/porter/lb/tests/unit/plugins/fixtures/comware"
OUTSIDE_SETTINGS = ("ANSIBLE_", "K8S_AUTH_")  # the caller's, dropped from the environment


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def changed(self) -> int:
        return recap(self.stdout)["changed"]


def run_play(tmp_path: Path, play: dict[str, Any], *, check: bool = False) -> Run:
    """ansible-playbook on localhost (connection local) with one play; never a leaked password."""
    done = run_playbook(
        [{"hosts": "localhost", "gather_facts": False, **play}],
        tmp_path,
        *(["--check"] * check),
        env=environment(drop=OUTSIDE_SETTINGS),
    )
    assert PASSWORD not in done.stdout + done.stderr
    return Run(done.returncode, done.stdout, done.stderr)


@dataclass(kw_only=True)
class Bed(objects.OwnedObjects):
    kubeconfig: Path
    tmp_path: Path

    def role(self, role: str, role_vars: dict[str, Any], *, check: bool = False) -> Run:
        """Run `role` with `role_vars`, authenticated by the play's module_defaults."""
        play = {
            "module_defaults": {"group/porter.lb.cluster": {"kubeconfig": str(self.kubeconfig)}},
            "roles": [{"role": f"porter.lb.{role}", "vars": role_vars}],
        }
        return run_play(self.tmp_path, play, check=check)


@pytest.fixture
def bed(
    control_plane: ControlPlane, api_client: client.ApiClient, crds: list[str], tmp_path: Path
) -> Iterator[Bed]:
    made = Bed(
        KubeAPI(api_client),
        run_id(),
        "rr",
        kubeconfig=control_plane.kubeconfig,
        tmp_path=tmp_path,
    )
    try:
        yield made
    finally:
        made.cleanup()


def succeeded(run: Run) -> Run:
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert recap(run.stdout)["failed"] == 0, run.stderr
    return run


# --- eip_pools ----------------------------------------------------------------------------------


def test_eip_pools_applies_idempotently_and_prunes_only_its_own(bed: Bed) -> None:
    web, ops, gone, foreign = (bed.own(objects.EIPS, s) for s in ("web", "ops", "gone", "foreign"))
    bed.api.create(objects.EIPS, objects.eip(foreign, "198.18.23.0/28"))  # not the role's
    owner = f"t{bed.tag}"
    pools = [
        {"name": web, "address": "198.18.20.0/28", "namespaces": ["web"], "priority": 5},
        {"name": ops, "address": "198.18.21.0/28", "protocol": "bgp", "labels": {"team": "ops"}},
        {"name": gone, "address": "198.18.22.0/28"},
    ]
    role_vars = {"eip_pools_list": pools, "eip_pools_owner": owner}

    # the PLAY RECAP counts tasks, not loop items: the one "Apply the Eips" task changed
    assert succeeded(bed.role("eip_pools", role_vars)).changed == 1
    assert succeeded(bed.role("eip_pools", role_vars)).changed == 0

    made = bed.get(objects.EIPS, web)
    assert made is not None
    assert made["spec"]["address"] == "198.18.20.0/28"
    assert made["spec"]["namespaces"] == ["web"]
    assert made["spec"]["priority"] == 5
    assert made["metadata"]["labels"] == {"porter-lb.io/eip-pools": owner}
    ops_labels = bed.get(objects.EIPS, ops)["metadata"]["labels"]  # type: ignore[index]
    assert ops_labels == {"team": "ops", "porter-lb.io/eip-pools": owner}

    # `gone` leaves the list: kept without prune, deleted with it; `foreign` has no label: kept
    role_vars["eip_pools_list"] = pools[:2]
    assert succeeded(bed.role("eip_pools", role_vars)).changed == 0
    assert bed.get(objects.EIPS, gone) is not None
    pruned = succeeded(bed.role("eip_pools", {**role_vars, "eip_pools_prune": True}))
    assert pruned.changed == 1
    assert bed.get(objects.EIPS, gone) is None
    assert bed.get(objects.EIPS, foreign) is not None
    assert bed.get(objects.EIPS, web) is not None

    # an item with state absent deletes its Eip
    absent = {**role_vars, "eip_pools_list": [pools[0], {"name": ops, "state": "absent"}]}
    assert succeeded(bed.role("eip_pools", absent)).changed == 1
    assert bed.get(objects.EIPS, ops) is None
    assert succeeded(bed.role("eip_pools", absent)).changed == 0


def test_eip_pools_check_mode_on_fresh_names_creates_nothing(bed: Bed) -> None:
    names = [bed.own(objects.EIPS, s) for s in ("chk1", "chk2")]
    pools = [
        {"name": names[0], "address": "198.18.24.0/28"},
        {
            "name": names[1],
            "address": "198.18.25.1-198.18.25.9",
            "protocol": "layer2",
            "interface": "eth0",
        },
    ]
    role_vars = {"eip_pools_list": pools, "eip_pools_wait": True}
    run = succeeded(bed.role("eip_pools", role_vars, check=True))
    assert run.changed == 1  # the one task; its two items are in the output
    assert run.stdout.count("changed: [localhost] => (item=") == 2
    assert all(bed.get(objects.EIPS, n) is None for n in names)


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"adress": "198.18.26.0/28"}, "adress"),  # misspelt option
        ({"address": "198.18.26.0/28", "priority": "high"}, "priority"),  # wrong type
        ({"address": "198.18.26.0/28", "protocol": "ospf"}, "protocol"),  # not a choice
        ({"address": "198.18.26.0/28", "state": "gone"}, "state"),
    ],
)
def test_eip_pools_bad_item_fails_naming_the_field_before_applying(
    bed: Bed, item: dict[str, Any], field: str
) -> None:
    good, bad = bed.own(objects.EIPS, "good"), bed.own(objects.EIPS, "bad")
    pools = [{"name": good, "address": "198.18.27.0/28"}, {"name": bad, **item}]
    run = bed.role("eip_pools", {"eip_pools_list": pools})
    assert run.returncode != 0
    assert re.search(rf"\b{field}\b.*eip_pools_list|eip_pools_list.*\b{field}\b", run.stdout)
    assert bed.get(objects.EIPS, good) is None  # refused before anything was applied


def test_eip_pools_item_without_name_or_duplicate_name_fails(bed: Bed) -> None:
    name = bed.own(objects.EIPS, "dup")
    run = bed.role("eip_pools", {"eip_pools_list": [{"address": "198.18.28.0/28"}]})
    assert run.returncode != 0
    assert "missing required arguments: name found in eip_pools_list" in run.stdout
    twice = [{"name": name, "address": "198.18.28.0/28"}] * 2
    run = bed.role("eip_pools", {"eip_pools_list": twice})
    assert run.returncode != 0
    assert f"eip_pools_list: each name must appear once; got {name}, {name}" in run.stdout
    assert bed.get(objects.EIPS, name) is None


def test_eip_pools_kubeconfig_variable_overrides_the_callers_module_defaults(bed: Bed) -> None:
    """eip_pools_kubeconfig wins over a module_defaults kubeconfig that leads nowhere, and
    without the variable the role uses the caller's module_defaults (the other tests)."""
    name = bed.own(objects.EIPS, "own-kc")
    closed = bed.tmp_path / "closed.kubeconfig"
    text = bed.kubeconfig.read_text()
    closed.write_text(re.sub(r"server: https://[^\s]+", "server: https://127.0.0.1:1", text))
    play = {
        "module_defaults": {"group/porter.lb.cluster": {"kubeconfig": str(closed)}},
        "roles": [
            {
                "role": "porter.lb.eip_pools",
                "vars": {
                    "eip_pools_list": [{"name": name, "address": "198.18.29.0/28"}],
                    "eip_pools_kubeconfig": str(bed.kubeconfig),
                },
            }
        ],
    }
    assert succeeded(run_play(bed.tmp_path, play)).changed == 1
    assert bed.get(objects.EIPS, name) is not None
    del play["roles"][0]["vars"]["eip_pools_kubeconfig"]  # type: ignore[index]
    refused = run_play(bed.tmp_path, play)
    assert refused.returncode != 0
    assert "cannot reach the API server" in refused.stdout


# --- bgp ----------------------------------------------------------------------------------------


def secret_path(name: str) -> str:
    return f"{SECRETS}/{name}"


def test_bgp_applies_conf_secret_and_peers_idempotently(bed: Bed) -> None:
    objects.ensure_namespace(bed.api, SECRET_NAMESPACE)
    conf = bed.own(objects.BGP_CONFS, "conf")
    tor, spine = bed.own(objects.BGP_PEERS, "tor"), bed.own(objects.BGP_PEERS, "spine")
    secret = bed.own(SECRETS, "pw")
    role_vars: dict[str, Any] = {
        "bgp_conf": {"name": conf, "as": 65001, "router_id": "198.51.100.2", "listen_port": 17900},
        "bgp_peer_password_secrets": [{"name": secret, "password": PASSWORD}],
        "bgp_peers": [
            {
                "name": tor,
                "conf": {
                    "neighbor_address": "198.51.100.1",
                    "peer_as": 65000,
                    "auth_password_secret_ref": {"name": secret},
                },
                "afi_safis": [
                    {
                        "config": {"family": {"afi": "AFI_IP", "safi": "SAFI_UNICAST"}},
                        "add_paths": {"config": {"send_max": 8}},
                    }
                ],
            },
            {"name": spine, "conf": {"neighbor_address": "198.51.100.3", "peer_as": 65000}},
        ],
    }
    # the BgpConf task, the Secrets task, the BgpPeers task
    assert succeeded(bed.role("bgp", role_vars)).changed == 3
    assert succeeded(bed.role("bgp", role_vars)).changed == 0

    made = bed.get(objects.BGP_CONFS, conf)
    assert made is not None
    assert made["spec"]["as"] == 65001
    assert made["spec"]["listenPort"] == 17900
    peer = bed.get(objects.BGP_PEERS, tor)
    assert peer is not None
    assert peer["spec"]["conf"]["authPasswordSecretRef"]["name"] == secret
    assert peer["spec"]["afiSafis"][0]["addPaths"]["config"]["sendMax"] == 8
    stored = bed.api.get(secret_path(secret))
    assert base64.b64decode(stored["data"]["password"]).decode() == PASSWORD

    # bgp_conf null leaves the BgpConf alone; a peer with state absent is deleted
    role_vars |= {"bgp_conf": None}
    role_vars["bgp_peers"] = [role_vars["bgp_peers"][0], {"name": spine, "state": "absent"}]
    assert succeeded(bed.role("bgp", role_vars)).changed == 1
    assert bed.get(objects.BGP_PEERS, spine) is None
    assert bed.get(objects.BGP_CONFS, conf) is not None


def test_bgp_check_mode_on_fresh_names_creates_nothing(bed: Bed) -> None:
    objects.ensure_namespace(bed.api, SECRET_NAMESPACE)
    conf = bed.own(objects.BGP_CONFS, "chkconf")
    peer = bed.own(objects.BGP_PEERS, "chkpeer")
    secret = bed.own(SECRETS, "chkpw")
    role_vars = {
        "bgp_conf": {"name": conf, "as": 65001},
        "bgp_peer_password_secrets": [{"name": secret, "password": PASSWORD}],
        "bgp_peers": [
            {
                "name": peer,
                "conf": {
                    "neighbor_address": "198.51.100.4",
                    "peer_as": 65000,
                    "auth_password_secret_ref": {"name": secret},
                },
            }
        ],
        "bgp_peers_wait": True,
    }
    assert succeeded(bed.role("bgp", role_vars, check=True)).changed == 3
    assert bed.get(objects.BGP_CONFS, conf) is None
    assert bed.get(objects.BGP_PEERS, peer) is None
    assert bed.get(SECRETS, secret) is None


@pytest.mark.parametrize(
    ("role_vars", "expected"),
    [
        ({"bgp_peers": [{"name": "p", "neighbour": {}}]}, r"neighbour.*bgp_peers"),
        ({"bgp_peers": [{"name": "p", "conf": "198.51.100.1"}]}, r"conf.*bgp_peers"),
        ({"bgp_conf": {"as": "sixty-five"}}, r"\bas\b.*bgp_conf"),
        ({"bgp_conf": {"routerid": "198.51.100.2"}}, r"routerid.*bgp_conf"),
        (
            {"bgp_peer_password_secrets": [{"name": "s"}]},
            r"bgp_peer_password_secrets: password is required with state present; missing for s",
        ),
    ],
)
def test_bgp_bad_variable_fails_naming_the_field(
    bed: Bed, role_vars: dict[str, Any], expected: str
) -> None:
    run = bed.role("bgp", role_vars)
    assert run.returncode != 0
    assert re.search(expected, run.stdout), run.stdout
    assert bed.get(objects.BGP_PEERS, "p") is None


def test_bgp_refusal_by_the_api_server_names_the_field(bed: Bed) -> None:
    name = bed.own(objects.BGP_PEERS, "refused")
    peer = {"name": name, "conf": {"neighbor_address": "not-an-ip", "peer_as": 65000}}
    run = bed.role("bgp", {"bgp_peers": [peer]})
    assert run.returncode != 0
    assert "neighbor_address" in run.stdout
    assert bed.get(objects.BGP_PEERS, name) is None


# --- comware_switch (no device) -----------------------------------------------------------------

NODES = json.loads((COMWARE_FIXTURES / "nodes.json").read_text())


def test_comware_switch_rendered_needs_no_switch_and_saves_nothing(tmp_path: Path) -> None:
    """Only comware_switch_state=rendered: the role is NOT run against a switch here."""
    out = tmp_path / "result.json"
    play = {
        "roles": [
            {
                "role": "porter.lb.comware_switch",
                "vars": {
                    "comware_switch_bgp": NODES,
                    "comware_switch_state": "rendered",
                    "comware_switch_save": True,
                },
            }
        ],
        "post_tasks": [
            {
                "ansible.builtin.copy": {
                    "content": "{{ comware_switch_result | to_json }}",
                    "dest": str(out),
                }
            }
        ],
    }
    run = succeeded(run_play(tmp_path, play))
    result = json.loads(out.read_text())
    golden = (COMWARE_FIXTURES / "rendered_nodes.cfg").read_text()
    assert result["rendered"].replace("simple s3cret", "simple ********") == golden
    assert result["changed"] is False
    assert "RUNNING HANDLER" not in run.stdout  # rendered changes nothing: no save

    running = (COMWARE_FIXTURES / "running_nodes.cfg").read_text()
    parsing = {"comware_switch_state": "parsed", "comware_switch_running_config": running}
    play["roles"] = [{"role": "porter.lb.comware_switch", "vars": parsing}]
    succeeded(run_play(tmp_path, play))
    parsed = json.loads(out.read_text())["parsed"]
    assert parsed["asn"] == 65000 and parsed["maximum_paths"] == 8

    no_config = {"role": "porter.lb.comware_switch", "vars": {"comware_switch_state": "rendered"}}
    bad = run_play(tmp_path, {"roles": [no_config]})
    assert bad.returncode != 0
    assert "config is required with state=rendered" in bad.stdout

    misspelt = {"role": "porter.lb.comware_switch", "vars": {"comware_switch_state": "merge"}}
    bad = run_play(tmp_path, {"roles": [misspelt]})
    assert bad.returncode != 0
    assert "comware_switch_state" in bad.stdout


@pytest.mark.parametrize("role", ["eip_pools", "bgp", "comware_switch"])
def test_ansible_doc_renders_the_role(role: str) -> None:
    done = subprocess.run(
        [str(BIN / "ansible-doc"), "-t", "role", f"porter.lb.{role}"],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(drop=OUTSIDE_SETTINGS),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "ERROR" not in done.stderr, done.stderr
    assert f"{role}_" in done.stdout
    if role == "comware_switch":
        assert "Not yet run against a real switch" in done.stdout


# --- AWX: the "add an address pool" job template ------------------------------------------------


def test_awx_add_pool_template_drives_pools_playbook_with_the_credentials_environment(
    bed: Bed,
) -> None:
    """playbooks/pools.yml with the job template's extra variables and survey answers, the
    connection only in K8S_AUTH_* (as AWX's Kubernetes credential gives it), none in the
    inventory. The pool is created, a second launch changes nothing, no other Eip is touched."""
    templates = json.loads((REPO / "docs/awx/job_templates.json").read_text())["job_templates"]
    template = next(t for t in templates if t["playbook"] == "playbooks/pools.yml")
    name = bed.own(objects.EIPS, "awx")
    other = bed.own(objects.EIPS, "other")
    bed.api.create(objects.EIPS, objects.eip(other, "198.18.31.0/28"))
    answers = {"pool_name": name, "pool_address": "198.18.30.0/28", "pool_protocol": "bgp"}
    answers |= {"pool_interface": "", "eip_pools_wait": "false"}
    (bed.tmp_path / "extra_vars.yml").write_text(template["extra_vars"])
    (bed.tmp_path / "survey.json").write_text(json.dumps(answers))
    (bed.tmp_path / "inventory.yml").write_text(
        json.dumps({"porter_lb_cluster": {"hosts": {"localhost": {"ansible_connection": "local"}}}})
    )
    command = [
        str(BIN / "ansible-playbook"),
        "-i",
        str(bed.tmp_path / "inventory.yml"),
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        "-e",
        "@extra_vars.yml",
        "-e",
        "@survey.json",
        str(REPO / template["playbook"]),
    ]
    env = environment(drop=OUTSIDE_SETTINGS) | {"K8S_AUTH_KUBECONFIG": str(bed.kubeconfig)}

    def launch() -> Run:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            check=False,
            cwd=bed.tmp_path,
        )
        return succeeded(Run(done.returncode, done.stdout, done.stderr))

    assert launch().changed == 1
    made = bed.get(objects.EIPS, name)
    assert made is not None
    assert made["spec"]["address"] == "198.18.30.0/28"
    assert made["spec"]["protocol"] == "bgp"
    assert "interface" not in made["spec"]
    assert launch().changed == 0
    assert "porter-lb.io/eip-pools" not in (bed.get(objects.EIPS, other) or {})["metadata"].get(
        "labels", {}
    )
