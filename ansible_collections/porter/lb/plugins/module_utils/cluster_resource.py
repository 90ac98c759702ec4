# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""porter-lb's cluster resources (Eip, BgpConf, BgpPeer) as the cluster modules see them.

Pure: no I/O, no Kubernetes client, no Ansible imports. It holds

* the modules' typed options, mirroring each CRD's ``spec`` in snake_case (one table per kind,
  used as the modules' argument specs);
* the one conversion between option names and API field names (snake_case <-> camelCase), and
  from options to a ``spec`` and from an API field path back to the option that sets it;
* what is compared to decide ``changed``, what is hidden from results and diffs (passwords);
* when an object counts as ready for ``wait`` (and a summary of its status for a timeout);
* the message a user sees when the API server refuses an object.

The adapter over kubernetes.core's client is ``cluster_api``.
"""

from __future__ import annotations

import copy
import json
import re

GROUP = "network.kubesphere.io"
API_VERSION = GROUP + "/v1alpha2"
HIDDEN = "********"
"""What a hidden value (a password) is replaced by in results and diffs."""
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

# --- names --------------------------------------------------------------------------------------

IRREGULAR_NAMES = {"using_known_ips": "usingKnownIPs"}
"""Option names whose API field is not the plain camelCase of the option (an initialism)."""

_IRREGULAR_FIELDS = {v: k for k, v in IRREGULAR_NAMES.items()}


def snake_to_camel(name):
    """The API field name of an option name: ``router_id`` -> ``routerId``."""
    if name in IRREGULAR_NAMES:
        return IRREGULAR_NAMES[name]
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camel_to_snake(name):
    """The option name of an API field name: ``routerId`` -> ``router_id``."""
    if name in _IRREGULAR_FIELDS:
        return _IRREGULAR_FIELDS[name]
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


# --- options ------------------------------------------------------------------------------------

GRACEFUL_RESTART_OPTIONS = dict(
    enabled=dict(type="bool"),
    restart_time=dict(type="int"),
    helper_only=dict(type="bool"),
    deferral_time=dict(type="int"),
    notification_enabled=dict(type="bool"),
    longlived_enabled=dict(type="bool"),
    stale_routes_time=dict(type="int"),
    peer_restart_time=dict(type="int"),
    peer_restarting=dict(type="bool"),
    local_restarting=dict(type="bool"),
    mode=dict(type="str"),
)

EIP_OPTIONS = dict(
    address=dict(type="str"),
    protocol=dict(type="str", choices=["bgp", "layer2"]),
    interface=dict(type="str"),
    disable=dict(type="bool"),
    using_known_ips=dict(type="bool"),
    priority=dict(type="int"),
    namespaces=dict(type="list", elements="str"),
    namespace_selector=dict(type="dict"),
    communities=dict(type="list", elements="str"),
    large_communities=dict(type="list", elements="str"),
    local_pref=dict(type="int"),
)
"""Eip ``spec``. A ``dict`` without ``options`` is a free-form map: its keys are data, kept."""

BGP_CONF_OPTIONS = {
    "as": dict(type="int"),
    "as_per_rack": dict(type="dict"),
    "router_id": dict(type="str"),
    "listen_port": dict(type="int"),
    "listen_addresses": dict(type="list", elements="str"),
    "families": dict(type="list", elements="int"),
    "use_multiple_paths": dict(type="bool"),
    "graceful_restart": dict(type="dict", options=GRACEFUL_RESTART_OPTIONS),
}
"""BgpConf ``spec``."""

BGP_PEER_OPTIONS = dict(
    conf=dict(
        type="dict",
        options=dict(
            neighbor_address=dict(type="str"),
            neighbor_interface=dict(type="str"),
            peer_as=dict(type="int"),
            local_as=dict(type="int"),
            peer_group=dict(type="str"),
            peer_type=dict(type="int"),
            description=dict(type="str"),
            auth_password=dict(type="str", no_log=True),
            auth_password_secret_ref=dict(
                type="dict",
                no_log=False,
                options=dict(
                    name=dict(type="str", required=True),
                    namespace=dict(type="str"),
                    key=dict(type="str", no_log=False),
                ),
            ),
            admin_down=dict(type="bool"),
            allow_own_as=dict(type="int"),
            remove_private_as=dict(type="str"),
            replace_peer_as=dict(type="bool"),
            route_flap_damping=dict(type="bool"),
            send_community=dict(type="int"),
            vrf=dict(type="str"),
        ),
    ),
    afi_safis=dict(
        type="list",
        elements="dict",
        options=dict(
            config=dict(
                type="dict",
                options=dict(
                    enabled=dict(type="bool"),
                    family=dict(
                        type="dict",
                        options=dict(
                            afi=dict(type="str", choices=["AFI_IP", "AFI_IP6"]),
                            safi=dict(type="str", choices=["SAFI_UNICAST"]),
                        ),
                    ),
                ),
            ),
            add_paths=dict(
                type="dict",
                options=dict(
                    config=dict(
                        type="dict",
                        options=dict(receive=dict(type="bool"), send_max=dict(type="int")),
                    )
                ),
            ),
            mp_graceful_restart=dict(
                type="dict",
                options=dict(
                    config=dict(type="dict", options=dict(enabled=dict(type="bool"))),
                ),
            ),
        ),
    ),
    ebgp_multihop=dict(
        type="dict",
        options=dict(enabled=dict(type="bool"), multihop_ttl=dict(type="int")),
    ),
    graceful_restart=dict(type="dict", options=GRACEFUL_RESTART_OPTIONS),
    bfd=dict(
        type="dict",
        options=dict(
            enabled=dict(type="bool"),
            transmit_interval=dict(type="int"),
            receive_interval=dict(type="int"),
            detect_multiplier=dict(type="int"),
        ),
    ),
    timers=dict(
        type="dict",
        options=dict(
            config=dict(
                type="dict",
                options=dict(
                    connect_retry=dict(type="str"),
                    hold_time=dict(type="str"),
                    keepalive_interval=dict(type="str"),
                    minimum_advertisement_interval=dict(type="str"),
                ),
            ),
        ),
    ),
    transport=dict(
        type="dict",
        options=dict(
            mtu_discovery=dict(type="bool"),
            passive_mode=dict(type="bool"),
            remote_address=dict(type="str"),
            remote_port=dict(type="int"),
            local_address=dict(type="str"),
            tcp_mss=dict(type="int"),
        ),
    ),
    node_selector=dict(
        type="dict",
        options=dict(
            match_labels=dict(type="dict"),
            match_expressions=dict(
                type="list",
                elements="dict",
                options=dict(
                    key=dict(type="str", required=True, no_log=False),
                    operator=dict(
                        type="str",
                        required=True,
                        choices=["In", "NotIn", "Exists", "DoesNotExist"],
                    ),
                    values=dict(type="list", elements="str"),
                ),
            ),
        ),
    ),
)
"""BgpPeer ``spec``."""


def spec_from_options(params, options):
    """The API ``spec`` for the options in `params` that are set (not None), camelCased.

    Option names are converted where `options` declares them (recursively, also in lists of
    dicts); the keys of free-form maps (a ``dict`` option without ``options``) and all values
    are kept as they are.
    """
    spec = {}
    for name, option in options.items():
        value = params.get(name)
        if value is None:
            continue
        sub = option.get("options")
        if sub is not None and option.get("type") == "list":
            value = [spec_from_options(item, sub) for item in value]
        elif sub is not None:
            value = spec_from_options(value, sub)
        spec[snake_to_camel(name)] = value
    return spec


def options_from_spec(spec, options):
    """The inverse of `spec_from_options`: an API ``spec`` as option values (unknown fields kept
    under their snake_case names)."""
    params = {}
    for field, value in spec.items():
        name = camel_to_snake(field)
        sub = options.get(name, {}).get("options")
        if sub is not None and isinstance(value, list):
            params[name] = [options_from_spec(item, sub) for item in value]
        elif sub is not None and isinstance(value, dict):
            params[name] = options_from_spec(value, sub)
        else:
            params[name] = value
    return params


def option_for_field(path):
    """The option that sets an API field path, or None for fields outside ``spec``/``metadata``.

    ``spec.conf.neighborAddress`` -> ``conf.neighbor_address``;
    ``spec.afiSafis[0].addPaths.config.sendMax`` -> ``afi_safis[0].add_paths.config.send_max``;
    ``metadata.name`` -> ``name``.
    """
    if path in ("metadata.name", "metadata.labels"):
        return path.split(".", 1)[1]
    if not path.startswith("spec."):
        return None
    parts = []
    for part in path[len("spec.") :].split("."):
        field, bracket, rest = part.partition("[")
        parts.append(camel_to_snake(field) + bracket + rest)
    return ".".join(parts)


def option_paths(options, prefix=""):
    """Every option path in an options table, dotted (``conf.auth_password_secret_ref.name``)."""
    paths = []
    for name, option in options.items():
        path = prefix + name
        paths.append(path)
        if option.get("options"):
            paths.extend(option_paths(option["options"], path + "."))
    return paths


# --- kinds --------------------------------------------------------------------------------------


class Kind:
    """One of porter-lb's cluster-scoped CRD kinds, as the modules handle it."""

    def __init__(self, kind, plural, options, secret_fields=(), required_for_present=()):
        self.kind = kind
        self.plural = plural
        self.options = options
        self.secret_fields = tuple(secret_fields)
        """Field paths (tuples of keys) whose values are never shown."""
        self.required_for_present = tuple(required_for_present)

    def manifest(self, name, params):
        """The object to apply: what the options say, nothing else (server-side apply owns
        exactly these fields)."""
        metadata = {"name": name}
        if params.get("labels") is not None:
            metadata["labels"] = dict(params["labels"])
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": metadata,
            "spec": spec_from_options(params, self.options),
        }


EIP = Kind("Eip", "eips", EIP_OPTIONS, required_for_present=("address",))
BGP_CONF = Kind("BgpConf", "bgpconfs", BGP_CONF_OPTIONS)
BGP_PEER = Kind(
    "BgpPeer",
    "bgppeers",
    BGP_PEER_OPTIONS,
    secret_fields=[("spec", "conf", "authPassword")],
    required_for_present=("conf",),
)


# --- comparing and hiding -----------------------------------------------------------------------


def managed_view(obj):
    """The part of an object the modules manage: name, labels and spec.

    Two objects with the same view are the same for ``changed``; it is also what diff shows.
    None (no object) gives an empty view.
    """
    if not obj:
        return {}
    metadata = obj.get("metadata") or {}
    view = {"metadata": {"name": metadata.get("name")}, "spec": copy.deepcopy(obj.get("spec"))}
    if metadata.get("labels"):
        view["metadata"]["labels"] = dict(metadata["labels"])
    if view["spec"] is None:
        del view["spec"]
    return view


def _get(obj, path):
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _set(obj, path, value):
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def hide_secrets(obj, kind, compared_with=None):
    """A copy of `obj` with its secret fields replaced by HIDDEN, and without the
    ``last-applied-configuration`` annotation (it may hold them) and managedFields.

    With `compared_with` (the other side of a diff), a secret that both sides have and that
    differs is shown as ``HIDDEN (changed)``, so a diff says that a password changed but not to
    what.
    """
    if obj is None:
        return None
    hidden = copy.deepcopy(obj)
    metadata = hidden.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("managedFields", None)
        annotations = metadata.get("annotations")
        if isinstance(annotations, dict) and LAST_APPLIED in annotations:
            annotations[LAST_APPLIED] = HIDDEN
    for path in kind.secret_fields:
        value = _get(hidden, path)
        if value is None:
            continue
        other = _get(compared_with, path) if compared_with is not None else None
        changed = other is not None and other != value
        _set(hidden, path, HIDDEN + " (changed)" if changed else HIDDEN)
    return hidden


def diff_views(before, after, kind):
    """Ansible's ``diff`` for a change from `before` to `after` (objects or None), secrets
    hidden."""
    before_view, after_view = managed_view(before), managed_view(after)
    return {
        "before": hide_secrets(before_view, kind),
        "after": hide_secrets(after_view, kind, compared_with=before_view),
    }


# --- readiness ----------------------------------------------------------------------------------


def _condition(obj, kind):
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return None


def eip_readiness(obj):
    """(ready, what was seen) for an Eip: its Ready condition is True for its generation.

    The allocation controller sets Ready True (reason Ready, Exhausted or Disabled) when the
    Eip is a usable pool and False (with why) when it is not.
    """
    condition = _condition(obj, "Ready")
    if condition is None:
        return False, "no Ready condition in status yet"
    generation = (obj.get("metadata") or {}).get("generation")
    observed = condition.get("observedGeneration")
    seen = "Ready=%s reason %s: %s" % (
        condition.get("status"),
        condition.get("reason") or "-",
        condition.get("message") or "",
    )
    if generation is not None and observed is not None and observed < generation:
        return False, "%s (for generation %s, the spec is at %s)" % (seen, observed, generation)
    return condition.get("status") == "True", seen


def bgp_peer_readiness(obj):
    """(ready, what was seen) for a BgpPeer: every speaker that peers with it reports the
    session ESTABLISHED in ``status.nodesPeerStatus`` (and at least one does).

    Each speaker (a node's agent, or ``central``) writes its own entry,
    ``{"peerState": {"sessionState": "ESTABLISHED", ...}}`` with GoBGP's state names.
    """
    entries = (obj.get("status") or {}).get("nodesPeerStatus") or {}
    if not entries:
        return False, "no status.nodesPeerStatus yet (no speaker has picked the peer up)"
    states = {
        speaker: ((entry or {}).get("peerState") or {}).get("sessionState") or "UNKNOWN"
        for speaker, entry in entries.items()
    }
    seen = ", ".join("%s: %s" % (speaker, states[speaker]) for speaker in sorted(states))
    return all(state == "ESTABLISHED" for state in states.values()), "sessions " + seen


READINESS = {
    "Eip": (eip_readiness, "its Ready condition to be True"),
    "BgpPeer": (bgp_peer_readiness, "its BGP sessions to be Established"),
}
"""Per kind: the readiness function and what `wait` waits for, in words."""


def timeout_message(kind, name, timeout, awaited, seen):
    """The failure message of a `wait` that timed out."""
    return "timed out after %ss waiting for %s '%s' %s; last seen: %s" % (
        timeout,
        kind,
        name,
        awaited,
        seen,
    )


# --- refusals -----------------------------------------------------------------------------------


def refusal_message(kind, name, body, action="apply"):
    """What the user reads when the API server refuses an object.

    `body` is the response body (a Status, as JSON text or dict, or anything else). Each field
    cause names the API field and, when the field is an option, the option: ``Eip 'pool-a':
    spec.address (option address): Invalid value: "string": spec.address '10.0.0.9-10.0.0.1':
    range start is after its end``.
    """
    status = body
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            status = json.loads(body)
        except ValueError:
            status = None
    if not isinstance(status, dict):
        return "%s '%s': the API server refused the %s: %s" % (kind, name, action, body)
    causes = (status.get("details") or {}).get("causes") or []
    parts = []
    for cause in causes:
        field = cause.get("field") or ""
        option = option_for_field(field)
        where = field
        if option:
            where = "%s (option %s)" % (field, option)
        message = cause.get("message") or cause.get("reason") or ""
        parts.append("%s: %s" % (where, message) if where else message)
    if not parts:
        parts.append(status.get("message") or status.get("reason") or json.dumps(status))
    return "%s '%s': the API server refused the %s: %s" % (kind, name, action, "; ".join(parts))
