"""Failures a real cluster has, with porter-lb installed by Helm on it (tests/cluster/).

Each test states its rule and watches the router's kernel FIB (the next hops of an EIP):

* a pod deleted: with externalTrafficPolicy Local, its node's next hop leaves once no Ready
  endpoint is left there;
* a Deployment scaled from 2 to 3 replicas (one per node): the third node's next hop appears;
* a kubelet stopped: its Node goes NotReady after the grace period and its next hops go
  (externalTrafficPolicy Cluster: every Ready node); started again, they return;
* gobgpd killed in an agent pod: the kubelet restarts the container and the routes return;
* a BgpConf edit that needs a new BGP instance (listen port): each agent restarts its gobgpd,
  and with graceful restart no next hop leaves the FIB;
* the controller's leader pod deleted: another replica (the standby, or the replacement pod
  if it starts first) leads within the failover bound, no Service's IP changes, a new
  Service gets one;
* the agent DaemonSet rolled: one node at a time, so an EIP served by several nodes is never
  unreachable, and one served by a single node only while that node's agent restarts
  (docs/install.md, "Upgrades").
"""

from __future__ import annotations

import copy
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from porter_lab import netns, testapp, traffic
from porter_lab.clusterbed import NAMESPACE, ClusterBed
from porter_lab.fib import FibLog
from porter_lab.routers import established
from porter_lab.topology import EIP_POOL
from porter_lab.waiting import wait_for

APPS = "failures"


@pytest.fixture(scope="module")
def installed(bed: ClusterBed) -> Iterator[ClusterBed]:
    bed.helm("install", "porter-lb", "charts/porter-lb", *bed.image_values(), "--wait")
    bed.wait_porter_ready()
    bed.apply(bed.bgp_objects())
    bed.kubectl("create", "namespace", APPS)
    try:
        yield bed
    finally:
        bed.kubectl("delete", "namespace", APPS, "--wait=false", check=False)
        bed.helm("uninstall", "porter-lb", "--wait")
        bed.kubectl("delete", "namespace", APPS, "--timeout=90s", check=False)
        bed.kubectl("delete", "bgpconf,bgppeer,eip", "--all", "--timeout=60s")
        assert bed.leftovers() == []


def pinned_pod(bed: ClusterBed, name: str, app: str, node: str) -> dict:
    """A bare pod of the test app on `node` (no controller recreates it)."""
    template = testapp.deployment(app, APPS, bed.built["test-app"], 1)["spec"]["template"]
    spec = copy.deepcopy(template["spec"])
    spec["nodeName"] = node
    spec.pop("topologySpreadConstraints")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": APPS, "labels": template["metadata"]["labels"]},
        "spec": spec,
    }


def test_a_deleted_pod_takes_its_node_out(installed: ClusterBed) -> None:
    bed = installed
    bed.apply(
        [
            pinned_pod(bed, "pinned-1", "pinned", "node1"),
            pinned_pod(bed, "pinned-2", "pinned", "node2"),
            testapp.service("pinned", APPS, policy="Local", pool="lab-pool"),
        ]
    )
    ip = bed.service_ip("pinned", APPS)
    both = {bed.addresses["node1"], bed.addresses["node2"]}
    bed.wait_hops(ip, both, 120, "the EIP via node1 and node2 (a Ready pod on each)")
    bed.kubectl("delete", "pod", "-n", APPS, "pinned-2", "--wait=false")
    bed.wait_hops(ip, {bed.addresses["node1"]}, 30, "node2 out: no Ready endpoint left there")
    bed.kubectl("delete", "service", "-n", APPS, "pinned")
    bed.wait_hops(ip, set(), 30, "the EIP withdrawn with its Service")


def test_scaling_from_2_to_3_adds_the_third_node(installed: ClusterBed) -> None:
    bed = installed
    bed.deploy_app("web", APPS, replicas=2)
    ip = bed.service_ip("web", APPS)
    wait_for(lambda: len(bed.ready_node_addresses(APPS, "web")) == 2, 120, "2 Ready pods")
    bed.wait_hops(ip, lambda: bed.ready_node_addresses(APPS, "web"), 60, "two next hops")
    bed.kubectl("scale", "-n", APPS, "deployment/web", "--replicas=3")
    # One pod per node (the spread constraint): every node then hosts a Ready pod.
    bed.wait_hops(ip, set(bed.addresses.values()), 120, "the third node's next hop")


def node_ready(bed: ClusterBed, name: str) -> str:
    node = bed.get_json("node", name)
    return next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready")


def test_a_stopped_kubelet_takes_its_node_out(installed: ClusterBed) -> None:
    bed = installed
    bed.deploy_app("everywhere", APPS, replicas=3, policy="Cluster")
    ip = bed.service_ip("everywhere", APPS)
    everyone = set(bed.addresses.values())
    bed.wait_hops(ip, everyone, 120, "the EIP via every Ready node (Cluster policy)")
    node3 = bed.cluster.node("node3")
    stopped = time.monotonic()
    node3.stop_kubelet()
    try:
        wait_for(lambda: node_ready(bed, "node3") != "True", 60, "node3 NotReady")
        went_not_ready = time.monotonic() - stopped
        bed.wait_hops(ip, everyone - {bed.addresses["node3"]}, 30, "node3's next hop gone")
        print(f"kubelet stopped -> NotReady {went_not_ready:.1f}s")
    finally:
        node3.start_kubelet()
    wait_for(lambda: node_ready(bed, "node3") == "True", 60, "node3 Ready again")
    bed.wait_hops(ip, everyone, 60, "node3's next hop back")


def gobgpd_pid(bed: ClusterBed, node: str) -> int:
    """The gobgpd of `node`'s agent pod (hostNetwork: in the node's network namespace)."""
    pids = netns.run(["ip", "netns", "pids", bed.node_netns(node)]).split()
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "gobgpd":
                return int(pid)
        except OSError:
            continue
    raise AssertionError(f"no gobgpd in {node}'s namespace")


def agent_pod(bed: ClusterBed, node: str) -> dict:
    return next(
        p
        for p in bed.porter_pods()
        if "agent" in p["metadata"]["name"] and p["spec"]["nodeName"] == node
    )


def restarts(pod: dict, container: str) -> int:
    return next(
        s["restartCount"] for s in pod["status"]["containerStatuses"] if s["name"] == container
    )


def test_a_killed_gobgpd_is_restarted_by_the_kubelet_and_the_routes_return(
    installed: ClusterBed,
) -> None:
    bed = installed
    bed.deploy_app("web", APPS, replicas=3)
    ip = bed.service_ip("web", APPS)
    everyone = set(bed.addresses.values())
    bed.wait_hops(ip, everyone, 120, "the EIP via the three nodes")
    before = restarts(agent_pod(bed, "node2"), "gobgpd")
    os.kill(gobgpd_pid(bed, "node2"), signal.SIGKILL)
    bed.wait_hops(ip, everyone - {bed.addresses["node2"]}, 30, "node2 out (its session died)")
    wait_for(
        lambda: restarts(agent_pod(bed, "node2"), "gobgpd") == before + 1,
        60,
        "the kubelet restarting gobgpd",
    )
    bed.wait_hops(ip, everyone, 60, "node2's next hop back (the agent re-programmed gobgpd)")
    bed.wait_porter_ready()


def gobgpd_restarts(bed: ClusterBed) -> dict[str, int]:
    return {node: restarts(agent_pod(bed, node), "gobgpd") for node in bed.addresses}


def patch(bed: ClusterBed, kind: str, name: str, spec: dict) -> None:
    bed.kubectl("patch", kind, name, "--type=merge", "-p", json.dumps({"spec": spec}))


def test_a_bgpconf_edit_restarts_each_gobgpd_without_losing_a_next_hop(
    installed: ClusterBed,
) -> None:
    """GoBGP 4 runs one BGP instance per process: an edited listen port makes each agent stop
    its instance (graceful-restart peers keep the routes), SIGTERM its gobgpd (the pod shares
    its process namespace), and program the container the kubelet starts again. Rule: with
    graceful restart on, no next hop of the EIP leaves the router's kernel FIB."""
    bed = installed
    bed.deploy_app("edited", APPS, replicas=3)
    ip = bed.service_ip("edited", APPS)
    everyone = set(bed.addresses.values())
    bed.wait_hops(ip, everyone, 120, "the EIP via the three nodes")
    graceful = {"enabled": True, "restartTime": 120}
    try:
        # Turning graceful restart on is itself an instance change (one restart each).
        before = gobgpd_restarts(bed)
        patch(bed, "bgppeer", "lab-router", {"gracefulRestart": graceful})
        patch(bed, "bgpconf", "default", {"gracefulRestart": graceful})
        wait_for(
            lambda: all(n > before[node] for node, n in gobgpd_restarts(bed).items()),
            90,
            "each gobgpd restarted for graceful restart",
        )
        established(bed.router, 60)
        bed.wait_hops(ip, everyone, 60, "the EIP via the three nodes again")
        bed.wait_porter_ready()

        before = gobgpd_restarts(bed)
        fib = FibLog(bed.topology.router_ns, EIP_POOL)
        try:
            edited = time.monotonic()
            patch(bed, "bgpconf", "default", {"listenPort": 1179})
            wait_for(
                lambda: all(n == before[node] + 1 for node, n in gobgpd_restarts(bed).items()),
                90,
                "the agents restarting their gobgpd for the new listen port",
            )
            established(bed.router, 60)
            bed.wait_porter_ready()
            bed.wait_hops(ip, everyone, 60, "the EIP via the three nodes after the edit")
            took = time.monotonic() - edited
            lost = fib.lost_next_hops(edited)
        finally:
            fib.close()
        print(f"listen port edit: every gobgpd restarted and programmed in {took:.1f}s")
        assert lost == {}, f"next hops left the router's FIB during the edit: {lost}"
    finally:
        patch(bed, "bgpconf", "default", {"listenPort": 179, "gracefulRestart": None})
        patch(bed, "bgppeer", "lab-router", {"gracefulRestart": None})
        bed.wait_hops(ip, everyone, 120, "the EIP via the three nodes, settings restored")
        bed.kubectl("delete", "-n", APPS, "deployment/edited", "service/edited")


def lease_holder(bed: ClusterBed) -> str:
    lease = bed.get_json("lease", "-n", NAMESPACE, "porter-lb-controller")
    return str(lease["spec"].get("holderIdentity") or "")


def service_ips(bed: ClusterBed) -> dict[str, str]:
    found = {}
    for service in bed.get_json("services", "-n", APPS)["items"]:
        ingress = service.get("status", {}).get("loadBalancer", {}).get("ingress") or []
        if ingress:
            found[service["metadata"]["name"]] = ingress[0]["ip"]
    return found


def test_another_replica_leads_when_the_leader_pod_is_deleted(installed: ClusterBed) -> None:
    bed = installed
    bed.deploy_app("web", APPS, replicas=3)
    bed.service_ip("web", APPS)
    before = service_ips(bed)
    leader = lease_holder(bed)
    controllers = {
        p["metadata"]["name"] for p in bed.porter_pods() if "controller" in p["metadata"]["name"]
    }
    assert leader in controllers and len(controllers) == 2, (leader, controllers)
    (standby,) = controllers - {leader}
    deleted = time.monotonic()
    bed.kubectl("delete", "pod", "-n", NAMESPACE, leader, "--wait=false")
    # The deleted leader releases the Lease on SIGTERM: another replica takes it within the
    # failover bound (lease 15 s + 2 retry periods of 2 s), usually the standby within one retry
    # period; the ReplicaSet's replacement pod may win the race when it starts quickly.
    holder = wait_for(
        lambda: (h := lease_holder(bed)) not in ("", leader) and h, 19, "another replica leading"
    )
    who = "the standby" if holder == standby else "the replacement replica"
    print(f"{who} leads {time.monotonic() - deleted:.1f}s after the leader pod's deletion")
    bed.apply([testapp.service("after", APPS, pool="lab-pool")])
    bed.service_ip("after", APPS)  # the new leader allocates
    after = service_ips(bed)
    assert {k: after[k] for k in before} == before  # no IP changed
    assert after["after"] not in before.values()
    bed.wait_porter_ready()


def test_a_rolled_agent_daemonset_keeps_the_eips_reachable(installed: ClusterBed) -> None:
    bed = installed
    bed.deploy_app("web", APPS, replicas=3)
    many = bed.service_ip("web", APPS)
    bed.apply(
        [
            pinned_pod(bed, "single", "single", "node3"),
            testapp.service("single", APPS, policy="Local", pool="lab-pool"),
        ]
    )
    one = bed.service_ip("single", APPS)
    bed.wait_hops(many, set(bed.addresses.values()), 120, "web via the three nodes")
    bed.wait_hops(one, {bed.addresses["node3"]}, 120, "single via node3")
    bed.wait_reachable(many)
    bed.wait_reachable(one)
    probes = {ip: traffic.start_probe(bed.topology, ip, seconds=150) for ip in (many, one)}
    started = time.monotonic()
    bed.kubectl("rollout", "restart", "-n", NAMESPACE, "daemonset/porter-lb-agent")
    bed.kubectl("rollout", "status", "-n", NAMESPACE, "daemonset/porter-lb-agent", "--timeout=150s")
    rolled = time.monotonic() - started
    bed.wait_hops(many, set(bed.addresses.values()), 60, "web via the three nodes again")
    bed.wait_reachable(one)
    for process in probes.values():
        process.send_signal(signal.SIGTERM)  # ends the probe's loop now
    results = {ip: traffic.probe_outages(process, timeout=10) for ip, process in probes.items()}
    print(f"roll {rolled:.1f}s; (tries, failed, longest outage s): {results}")
    tries, failed, _ = results[many]
    assert failed == 0, f"the EIP served by three nodes failed {failed} of {tries} tries"
    assert results[one][2] <= ROLL_WINDOW, results[one]


ROLL_WINDOW = 10.0
"""Seconds an EIP served by a single node may be unreachable while that node's agent pod is
replaced (docs/install.md, "Upgrades")."""
