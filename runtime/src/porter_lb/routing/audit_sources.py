"""Where the route audit's two sides come from: the cluster's objects (one listing through
`KubeAPI`) and a router's BGP routes (BIRD through `birdc -r`, FRR through `vtysh`, gobgpd over
gRPC); `run_audit` reads both and compares them with `porter_lb.routing.audit`.

Used by `porter-lb audit` and by the `porter.lb.route_audit` module, which can also pass the
router's output read elsewhere (`router_output`).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Sequence
from typing import Any

from porter_lb.kube.api import KubeAPI, KubeconfigError, KubeError, load_api_client
from porter_lb.model.resources import (
    GROUP_PATH,
    LOAD_BALANCER_CLASS,
    Obj,
    object_name,
)
from porter_lb.routing.audit import (
    BIRD_SHOW_ROUTES,
    FRR_SHOW_ROUTES,
    AuditError,
    ClusterState,
    RouterKind,
    compare,
    desired_routes_from_cluster,
    parse_bird_routes,
    parse_frr_bgp_json,
    routes_from_output,
)
from porter_lb.routing.bgp_config import Mode


def _run(command: list[str], netns: str, timeout: float) -> str:
    if netns:
        command = ["ip", "netns", "exec", netns, *command]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise AuditError(f"{' '.join(command)}: {error}") from None
    if done.returncode != 0:
        output = (done.stderr.strip() or done.stdout.strip())[-500:]
        raise AuditError(f"{' '.join(command)}: exit status {done.returncode}: {output}")
    return done.stdout


def read_bird(socket: str, *, netns: str = "", timeout: float = 30.0) -> dict[str, set[str]]:
    """The BGP routes of a BIRD 2 (restricted, read-only `birdc -r`)."""
    command = ["birdc", "-r"] + (["-s", socket] if socket else [])
    output = _run([*command, BIRD_SHOW_ROUTES], netns, timeout)
    if "Access denied" in output or "Unable to connect" in output:
        raise AuditError(f"birdc {socket}: {output.strip()}")
    return parse_bird_routes(output)


def read_frr(vty_socket: str, *, netns: str = "", timeout: float = 30.0) -> dict[str, set[str]]:
    """The BGP routes (IPv4 and IPv6 unicast) of an FRR bgpd, through vtysh."""
    command = ["vtysh"] + (["--vty_socket", vty_socket] if vty_socket else [])
    routes: dict[str, set[str]] = {}
    for show in FRR_SHOW_ROUTES:
        output = _run([*command, "-c", show], netns, timeout)
        try:
            document = json.loads(output or "{}")
        except ValueError:
            raise AuditError(f"vtysh: {show}: not JSON: {output[:200]}") from None
        routes.update(parse_frr_bgp_json(document))
    return routes


def read_gobgp(target: str, *, timeout: float = 10.0) -> dict[str, set[str]]:
    """The paths (IPv4 and IPv6) in a gobgpd's global RIB, received or local; next-hop-self
    paths (a node speaker's own, next hop 0.0.0.0 or ::) say nothing about a next hop and
    are left out."""
    # Imported here: reading BIRD or FRR (the route_audit module on a controller host) must not
    # need grpc and the generated stubs.
    from porter_lb.routing.gobgp import GoBGP, GoBGPError

    routes: dict[str, set[str]] = {}
    try:
        with GoBGP(target, timeout=timeout) as gobgp:
            gobgp.wait_ready(timeout)
            paths = gobgp.rib_routes("0.0.0.0/0") + gobgp.rib_routes("::/0")
    except GoBGPError as error:
        raise AuditError(str(error)) from None
    for path in paths:
        hops = routes.setdefault(path.prefix, set())
        if path.next_hop and not ipaddress.ip_address(path.next_hop).is_unspecified:
            hops.add(path.next_hop)
    return routes


def read_cluster(api: Any, secret_namespace: str) -> ClusterState:
    """One list of every kind the speaker reads (`api` is a `KubeAPI`). Secrets are read in
    porter-lb's namespace only; if that is forbidden, `secrets` is None."""

    def items(path: str) -> list[Obj]:
        try:
            found, _ = api.list(path)
        except KubeError as error:
            raise AuditError(f"list {path}: {error}") from None
        return list(found)

    try:
        listed, _ = api.list(f"/api/v1/namespaces/{secret_namespace}/secrets")
        secrets: dict[str, Obj] | None = {object_name(s): s for s in listed}
    except KubeError as error:
        if error.status not in (401, 403):
            raise AuditError(f"list Secrets in {secret_namespace}: {error}") from None
        secrets = None
    return ClusterState(
        services=items("/api/v1/services"),
        endpoint_slices=items("/apis/discovery.k8s.io/v1/endpointslices"),
        nodes=items("/api/v1/nodes"),
        eips=items(f"{GROUP_PATH}/eips"),
        bgpconfs=items(f"{GROUP_PATH}/bgpconfs"),
        bgppeers=items(f"{GROUP_PATH}/bgppeers"),
        secrets=secrets,
    )


def run_audit(
    *,
    router: RouterKind,
    socket: str = "",
    vty_socket: str = "",
    gobgp: str = "",
    netns: str = "",
    kubeconfig: str = "",
    context: str = "",
    mode: Mode = "node",
    namespace: str = "porter-lb-system",
    class_name: str = LOAD_BALANCER_CLASS,
    bgp_peers: Sequence[str] = (),
    pools: Sequence[str] = (),
    timeout: float = 30.0,
    api_client: Any = None,
    router_output: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Read the cluster and the router, compare; the report of `compare` plus `router`,
    `mode`, `pools` (the Eips in scope) and `warnings`. AuditError if either is unreadable.

    `api_client` (a kubernetes ApiClient) is used instead of `kubeconfig`/`context` when
    given; `router_output` (see `routes_from_output`) instead of reading the router."""
    # output given is checked before the cluster is read: a bad one fails fast
    given = routes_from_output(router, router_output) if router_output is not None else None
    if api_client is None:
        try:
            api_client = load_api_client(kubeconfig or None, context=context or None)
        except KubeconfigError as error:
            raise AuditError(str(error)) from None
    api = KubeAPI(api_client)
    state = read_cluster(api, namespace)
    cluster = desired_routes_from_cluster(
        state,
        mode=mode,
        class_name=class_name,
        secret_namespace=namespace,
        bgp_peers=bgp_peers,
        pools=pools,
    )
    if given is not None:
        observed = given
    elif router == "bird":
        observed = read_bird(socket, netns=netns, timeout=timeout)
    elif router == "frr":
        observed = read_frr(vty_socket, netns=netns, timeout=timeout)
    else:
        observed = read_gobgp(gobgp or "unix:///run/porter-lb/gobgp.sock", timeout=timeout)
    report = compare(
        cluster.desired,
        observed,
        cluster.pools,
        aliases=cluster.aliases if mode == "node" else None,
        services=cluster.services,
    )
    return {
        **report,
        "router": router,
        "mode": mode,
        "pools": [
            {"name": name, "first": str(p.first), "last": str(p.last)} for name, p in cluster.pools
        ],
        "warnings": cluster.warnings,
    }
