"""porter.lb's cluster modules (eip, eip_info, bgp_conf, bgp_peer, bgp_peer_info) through
ansible-playbook, against the bed's real kube-apiserver with porter-lb's CRDs: idempotence,
check mode (a server-side dry run), diff with passwords hidden, refusals naming the field and
the option, deletion, and `wait` on a real allocation controller and a real BGP session."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from porter_lab import objects
from porter_lab.ansible_run import environment, run_task
from porter_lab.controlplane import ControlPlane
from porter_lab.routers import Bird, Neighbor, Router, RouterSpec, established
from porter_lab.speakers import CentralSpeaker, Gobgpd
from porter_lab.topology import EIP_POOL, NODE_ASN, ROUTER_ASN, Topology, run_id
from porter_lab.waiting import wait_for
from porter_lb.allocation.controller import AllocationController
from porter_lb.kube.api import KubeAPI
from porter_lb.kube.events import EventRecorder
from porter_lb.kube.informers import Informers

PASSWORD = "s3cret-md5-pw"  # must never appear in any output
SECRET_NAMESPACE = "porter-lb-system"


@dataclass(kw_only=True)
class Bed(objects.OwnedObjects):
    """The API server, a unique prefix for this test's objects, and what to remove after."""

    kubeconfig: Path
    tmp_path: Path

    def play(
        self,
        module: str,
        args: dict[str, Any],
        *,
        check: bool = False,
        diff: bool = False,
        auth_by_env: bool = False,
        auth_by_group: bool = False,
    ) -> tuple[dict[str, Any], str]:
        """Run `module` as one task of a playbook; its registered result and the stdout.

        The kubeconfig goes in the `kubeconfig` option; with `auth_by_env` in
        K8S_AUTH_KUBECONFIG as AWX's Kubernetes credential passes it; with `auth_by_group` in
        the play's module_defaults for the action group porter.lb.cluster.
        """
        play: dict[str, Any] = {}
        if auth_by_group:
            play["module_defaults"] = {
                "group/porter.lb.cluster": {"kubeconfig": str(self.kubeconfig)}
            }
        elif not auth_by_env:
            args = {"kubeconfig": str(self.kubeconfig), **args}
        env = environment(drop=("ANSIBLE_", "K8S_AUTH_"))
        if auth_by_env:
            env["K8S_AUTH_KUBECONFIG"] = str(self.kubeconfig)
        result, done = run_task(
            f"porter.lb.{module}",
            args,
            self.tmp_path,
            check=check,
            diff=diff,
            play=play,
            env=env,
            timeout=300,
        )
        assert PASSWORD not in done.stdout + done.stderr
        assert PASSWORD not in json.dumps(result)
        return result, done.stdout


@pytest.fixture
def bed(
    control_plane: ControlPlane, api_client: client.ApiClient, crds: list[str], tmp_path: Path
) -> Iterator[Bed]:
    made = Bed(
        KubeAPI(api_client),
        run_id(),
        "cm",
        kubeconfig=control_plane.kubeconfig,
        tmp_path=tmp_path,
    )
    try:
        yield made
    finally:
        made.cleanup()


def ready_condition(obj: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


# --- Eip ----------------------------------------------------------------------------------------


def test_eip_applies_idempotently_checks_diffs_refuses_and_deletes(bed: Bed) -> None:
    name = bed.own(objects.EIPS, "pool")
    args = {"name": name, "address": "198.18.10.0/28", "namespaces": ["web"], "priority": 5}

    # Check mode on a new Eip: changed, validated by the API server, nothing stored.
    checked, _ = bed.play("eip", args, check=True)
    assert checked["changed"] and not checked.get("failed")
    assert checked["result"]["spec"]["protocol"] == "bgp"  # the API server's default
    assert bed.get(objects.EIPS, name) is None

    created, out = bed.play("eip", args, diff=True)
    assert created["changed"]
    assert created["diff"]["before"] == {}
    assert created["diff"]["after"]["spec"] == {
        "address": "198.18.10.0/28",
        "namespaces": ["web"],
        "priority": 5,
        "protocol": "bgp",
    }
    assert '+        "priority": 5' in out  # the diff as ansible-playbook --diff prints it
    stored = bed.get(objects.EIPS, name)
    assert stored is not None and stored["spec"]["priority"] == 5
    assert "managedFields" not in created["result"]["metadata"]
    generation = stored["metadata"]["generation"]

    again, _ = bed.play("eip", args)
    assert again["changed"] is False
    assert bed.get(objects.EIPS, name)["metadata"]["generation"] == generation  # type: ignore[index]

    # A change in check mode: reported with its diff, not made.
    changed_args = {**args, "priority": 1, "namespaces": None}
    predicted, _ = bed.play("eip", changed_args, check=True, diff=True)
    assert predicted["changed"]
    assert predicted["diff"]["before"]["spec"]["priority"] == 5
    assert predicted["diff"]["after"]["spec"]["priority"] == 1
    assert "namespaces" not in predicted["diff"]["after"]["spec"]  # no longer set: removed
    assert bed.get(objects.EIPS, name)["spec"]["priority"] == 5  # type: ignore[index]
    made, _ = bed.play("eip", changed_args)
    assert made["changed"] and made["result"]["spec"]["priority"] == 1
    assert "namespaces" not in bed.get(objects.EIPS, name)["spec"]  # type: ignore[index]

    # Refusals name the API field, the option and the rule; nothing changes.
    bad_name = bed.own(objects.EIPS, "bad")
    bad, _ = bed.play("eip", {"name": bad_name, "address": "198.18.10.9-198.18.10.1"})
    assert bad["failed"] and not bad["changed"]
    assert bad["msg"].startswith(f"Eip '{bad_name}': the API server refused the apply: ")
    assert "spec.address (option address)" in bad["msg"]
    assert "'198.18.10.9-198.18.10.1': range start is after its end" in bad["msg"]
    assert bed.get(objects.EIPS, bad_name) is None
    bad_check, _ = bed.play("eip", {"name": bad_name, "address": "198.18.10.1/24"}, check=True)
    assert bad_check["failed"] and "CIDR has host bits set" in bad_check["msg"]
    layer2, _ = bed.play("eip", {**changed_args, "protocol": "layer2"})
    assert layer2["failed"] and "spec.interface (option interface)" in layer2["msg"]
    immutable, _ = bed.play("eip", {**changed_args, "address": "198.18.11.0/28"})
    assert immutable["failed"] and "immutable" in immutable["msg"]
    assert "spec.address (option address)" in immutable["msg"]
    assert bed.get(objects.EIPS, name)["spec"]["address"] == "198.18.10.0/28"  # type: ignore[index]
    missing, _ = bed.play("eip", {"name": bad_name})
    assert missing["failed"] and "address" in missing["msg"]

    # Absent: check mode keeps it, then deleted once, then nothing to do.
    gone_check, _ = bed.play("eip", {"name": name, "state": "absent"}, check=True, diff=True)
    assert gone_check["changed"] and gone_check["diff"]["after"] == {}
    assert bed.get(objects.EIPS, name) is not None
    gone, _ = bed.play("eip", {"name": name, "state": "absent"})
    assert gone["changed"]
    assert bed.get(objects.EIPS, name) is None
    gone_again, _ = bed.play("eip", {"name": name, "state": "absent"})
    assert gone_again["changed"] is False


def test_eip_info_by_name_and_labels(bed: Bed) -> None:
    blue, green = bed.own(objects.EIPS, "blue"), bed.own(objects.EIPS, "green")
    bed.play("eip", {"name": blue, "address": "198.18.12.0/30", "labels": {"team": bed.tag}})
    bed.play("eip", {"name": green, "address": "198.18.12.4/30", "labels": {"team": "x"}})

    everything, _ = bed.play("eip_info", {})
    names = [o["metadata"]["name"] for o in everything["resources"]]
    assert {blue, green} <= set(names) and everything["changed"] is False
    one, _ = bed.play("eip_info", {"name": green}, auth_by_group=True)
    assert [o["metadata"]["name"] for o in one["resources"]] == [green]
    assert one["resources"][0]["kind"] == "Eip"
    assert one["resources"][0]["spec"]["address"] == "198.18.12.4/30"
    labelled, _ = bed.play("eip_info", {"label_selectors": [f"team={bed.tag}"]})
    assert [o["metadata"]["name"] for o in labelled["resources"]] == [blue]
    both, _ = bed.play("eip_info", {"name": green, "label_selectors": [f"team={bed.tag}"]})
    assert both["resources"] == []
    none, _ = bed.play("eip_info", {"name": "cm-nothing"}, auth_by_env=True)
    assert none["resources"] == []

    # An API server that does not answer: a failure that says so, not a traceback.
    closed = bed.tmp_path / "closed.kubeconfig"
    text = bed.kubeconfig.read_text()
    server = next(line.split()[-1] for line in text.splitlines() if "server:" in line)
    closed.write_text(text.replace(server, "https://127.0.0.1:9"))
    unreachable, _ = bed.play("eip_info", {"kubeconfig": str(closed)})
    assert unreachable["failed"]
    assert unreachable["msg"].startswith("cannot reach the API server: ")


@dataclass
class Controller:
    """The allocation controller in a thread of this process, as tests/bed/test_controller.py."""

    api: KubeAPI

    def __post_init__(self) -> None:
        self.informers = Informers(self.api, ["Service", "Namespace", "Eip"], watch_timeout=30)
        self.controller = AllocationController(
            self.api, self.informers, EventRecorder(self.api, host="t")
        )
        self.controller.register()
        self.informers.start()
        assert self.informers.wait_synced(10)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(
            target=self.controller.run, args=(self.stop_event,), daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.controller.stop()
        self.thread.join(30)
        self.informers.stop()
        assert not self.thread.is_alive()


def test_eip_wait_until_the_controller_has_the_pool(bed: Bed) -> None:
    name = bed.own(objects.EIPS, "wait")
    # No controller: the wait times out, naming what it waited for and what it saw.
    timed_out, _ = bed.play(
        "eip", {"name": name, "address": "198.18.13.0/29", "wait": True, "wait_timeout": 2}
    )
    assert timed_out["failed"]
    assert timed_out["msg"] == (
        f"timed out after 2s waiting for Eip '{name}' its Ready condition to be True; "
        "last seen: no Ready condition in status yet"
    )
    controller = Controller(bed.api)
    try:
        ready, _ = bed.play(
            "eip", {"name": name, "address": "198.18.13.0/29", "wait": True, "wait_timeout": 30}
        )
        assert not ready.get("failed"), ready
        assert ready["changed"] is False  # the object was created by the first run
        condition = ready_condition(ready["result"])
        assert (condition["status"], condition["reason"]) == ("True", "Ready")
        assert ready["result"]["status"]["poolSize"] == 8

        # A pool the controller refuses (it overlaps the first): Ready=False, and the reason
        # is in the timeout message.
        overlap = bed.own(objects.EIPS, "overlap")
        refused, _ = bed.play(
            "eip",
            {"name": overlap, "address": "198.18.13.4/30", "wait": True, "wait_timeout": 5},
        )
        assert refused["failed"] and refused["msg"].startswith(
            f"timed out after 5s waiting for Eip '{overlap}' its Ready condition to be True; "
            "last seen: Ready=False reason "
        )

        # Wait on delete: gone when the task returns.
        gone, _ = bed.play("eip", {"name": overlap, "state": "absent", "wait": True})
        assert gone["changed"] and bed.get(objects.EIPS, overlap) is None
    finally:
        controller.stop()


# --- BgpConf ------------------------------------------------------------------------------------


def test_bgp_conf_through_the_awx_credential_env(bed: Bed) -> None:
    """Authentication only through K8S_AUTH_KUBECONFIG, as AWX's Kubernetes credential does."""
    name = bed.own(objects.BGP_CONFS, "conf")
    args = {
        "name": name,
        "as": 65001,
        "listen_port": -1,
        "router_id": "198.51.100.11",
        "graceful_restart": {"enabled": True, "restart_time": 120},
    }
    checked, _ = bed.play("bgp_conf", args, check=True, auth_by_env=True)
    assert checked["changed"] and bed.get(objects.BGP_CONFS, name) is None
    created, _ = bed.play("bgp_conf", args, diff=True, auth_by_env=True)
    assert created["changed"]
    assert created["diff"]["after"]["spec"] == {
        "as": 65001,
        "listenPort": -1,
        "routerId": "198.51.100.11",
        "gracefulRestart": {"enabled": True, "restartTime": 120},
    }
    again, _ = bed.play("bgp_conf", args, auth_by_env=True)
    assert again["changed"] is False

    bad, _ = bed.play("bgp_conf", {**args, "router_id": "2001:db8::1"}, auth_by_env=True)
    assert bad["failed"] and "spec.routerId (option router_id)" in bad["msg"]
    assert "a BGP router ID must be an IPv4 address" in bad["msg"]
    too_big, _ = bed.play("bgp_conf", {**args, "as": 2**32}, auth_by_env=True)
    assert too_big["failed"] and "spec.as (option as)" in too_big["msg"]
    assert bed.get(objects.BGP_CONFS, name)["spec"]["routerId"] == "198.51.100.11"  # type: ignore[index]

    gone, _ = bed.play("bgp_conf", {"name": name, "state": "absent"}, auth_by_env=True)
    assert gone["changed"] and bed.get(objects.BGP_CONFS, name) is None
    gone_again, _ = bed.play("bgp_conf", {"name": name, "state": "absent"}, auth_by_env=True)
    assert gone_again["changed"] is False


# --- BgpPeer ------------------------------------------------------------------------------------


def test_bgp_peer_hides_its_password_and_refuses_bad_input(bed: Bed) -> None:
    name = bed.own(objects.BGP_PEERS, "tor")
    args: dict[str, Any] = {
        "name": name,
        "conf": {"neighbor_address": "198.51.100.1", "peer_as": 65000, "auth_password": PASSWORD},
        "node_selector": {
            "match_labels": {"topology.kubernetes.io/zone": "rack1"},
            "match_expressions": [{"key": "porter-lb/speaker", "operator": "Exists"}],
        },
        "afi_safis": [
            {
                "config": {"family": {"afi": "AFI_IP", "safi": "SAFI_UNICAST"}, "enabled": True},
                "add_paths": {"config": {"send_max": 8}},
            }
        ],
        "timers": {"config": {"hold_time": "9", "keepalive_interval": "3"}},
    }
    checked, _ = bed.play("bgp_peer", args, check=True, diff=True)
    assert checked["changed"] and bed.get(objects.BGP_PEERS, name) is None
    created, out = bed.play("bgp_peer", args, diff=True)
    assert created["changed"]
    assert created["result"]["spec"]["conf"]["authPassword"] == "********"
    assert created["diff"]["after"]["spec"]["conf"] == {
        "neighborAddress": "198.51.100.1",
        "peerAs": 65000,
        "authPassword": "********",
    }
    assert created["diff"]["after"]["spec"]["nodeSelector"]["matchLabels"] == {
        "topology.kubernetes.io/zone": "rack1"
    }
    assert created["diff"]["after"]["spec"]["afiSafis"][0]["addPaths"] == {"config": {"sendMax": 8}}
    stored = bed.get(objects.BGP_PEERS, name)
    assert stored is not None and stored["spec"]["conf"]["authPassword"] == PASSWORD
    assert stored["spec"]["timers"]["config"] == {"holdTime": "9", "keepaliveInterval": "3"}

    again, _ = bed.play("bgp_peer", args, diff=True)
    assert again["changed"] is False

    # A new password: changed, and the diff says so without showing either.
    new_password = {**args, "conf": {**args["conf"], "auth_password": PASSWORD + "2"}}
    rotated, out = bed.play("bgp_peer", new_password, diff=True)
    assert rotated["changed"]
    assert rotated["diff"]["before"]["spec"]["conf"]["authPassword"] == "********"
    assert rotated["diff"]["after"]["spec"]["conf"]["authPassword"] == "******** (changed)"
    assert PASSWORD + "2" not in out

    info, _ = bed.play("bgp_peer_info", {"name": name})
    (listed,) = info["resources"]
    assert listed["spec"]["conf"]["authPassword"] == "********"
    assert listed["kind"] == "BgpPeer"

    # Refusals: a bad address, a password twice, an In expression without values.
    bad_address = {**args, "conf": {"neighbor_address": "198.51.100.300", "peer_as": 65000}}
    bad, _ = bed.play("bgp_peer", bad_address)
    assert bad["failed"]
    assert "spec.conf.neighborAddress (option conf.neighbor_address)" in bad["msg"]
    assert "'198.51.100.300': not an IPv4 or IPv6 address" in bad["msg"]
    both = {
        **args,
        "conf": {**args["conf"], "auth_password_secret_ref": {"name": "tor-pw"}},
    }
    twice, _ = bed.play("bgp_peer", both)
    assert twice["failed"] and "spec.conf.authPassword (option conf.auth_password)" in twice["msg"]
    assert "set only one" in twice["msg"]
    no_values = {
        **args,
        "node_selector": {"match_expressions": [{"key": "rack", "operator": "In"}]},
    }
    empty, _ = bed.play("bgp_peer", no_values, check=True)
    assert empty["failed"] and "values must not be empty" in empty["msg"]
    assert "option node_selector.match_expressions[0].values" in empty["msg"]
    stored = bed.get(objects.BGP_PEERS, name)
    assert stored is not None and stored["spec"]["conf"]["neighborAddress"] == "198.51.100.1"

    # No speaker runs: waiting for the session times out, saying none reported it.
    timed_out, _ = bed.play("bgp_peer", {**args, "wait": True, "wait_timeout": 2})
    assert timed_out["failed"]
    assert timed_out["msg"] == (
        f"timed out after 2s waiting for BgpPeer '{name}' its BGP sessions to be Established; "
        "last seen: no status.nodesPeerStatus yet (no speaker has picked the peer up)"
    )

    gone, _ = bed.play("bgp_peer", {"name": name, "state": "absent"}, diff=True)
    assert gone["changed"] and gone["diff"]["before"]["spec"]["conf"]["authPassword"] == "********"
    assert bed.get(objects.BGP_PEERS, name) is None
    gone_again, _ = bed.play("bgp_peer", {"name": name, "state": "absent"})
    assert gone_again["changed"] is False


@pytest.fixture
def central_router(topology: Topology, tmp_path: Path) -> Iterator[Router]:
    """BIRD in the router namespace, with the central speaker (node1) as its one neighbour."""
    spec = RouterSpec(
        asn=ROUTER_ASN,
        router_id=topology.router_address,
        neighbors=(Neighbor(topology.nodes[0].address, NODE_ASN, "central"),),
        pools=(EIP_POOL,),
        add_paths_rx=True,
    )
    router = Bird(topology.router_ns, spec, tmp_path / "bird")
    try:
        yield router.start()
    finally:
        router.stop()


def test_bgp_peer_wait_until_the_session_is_established(
    bed: Bed,
    topology: Topology,
    central_router: Router,
    start_gobgpd: Callable[[str], Gobgpd],
) -> None:
    node = topology.nodes[0]
    conf = bed.own(objects.BGP_CONFS, "conf")
    made, _ = bed.play(
        "bgp_conf", {"name": conf, "as": NODE_ASN, "router_id": node.address, "listen_port": 179}
    )
    assert made["changed"]
    gobgpd = start_gobgpd(node.netns)
    objects.ensure_namespace(bed.api, SECRET_NAMESPACE)
    speaker = CentralSpeaker(
        bed.api, gobgpd.target, "cluster-modules-test", SECRET_NAMESPACE
    ).start()
    try:
        peer = bed.own(objects.BGP_PEERS, "router")
        up, _ = bed.play(
            "bgp_peer",
            {
                "name": peer,
                "conf": {"neighbor_address": topology.router_address, "peer_as": ROUTER_ASN},
                "wait": True,
                "wait_timeout": 60,
            },
        )
        assert not up.get("failed"), up
        assert up["changed"]
        entry = up["result"]["status"]["nodesPeerStatus"]["central"]["peerState"]
        assert entry == {
            "neighborAddress": topology.router_address,
            "peerAs": ROUTER_ASN,
            "sessionState": "ESTABLISHED",
        }
        established(central_router)
        wait_for(
            lambda: bed.play("bgp_peer_info", {"name": peer})[0]["resources"][0]["status"],
            5,
            "bgp_peer_info to show the status",
        )
    finally:
        speaker.stop()
        assert not speaker.running(), "the central speaker did not stop"
