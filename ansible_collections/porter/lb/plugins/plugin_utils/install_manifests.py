# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""porter-lb's Kubernetes manifests: the one description both install paths render.

``manifests(values, component)`` returns the objects (plain dicts) that install porter-lb's
controller or agent, or (component ``uninstall``) the Job that releases what porter-lb holds in
the cluster before it is removed. It is the single source of truth:

* the roles ``porter.lb.controller`` and ``porter.lb.agent`` call it through the filter
  ``porter.lb.install_manifests`` and apply the result with ``kubernetes.core.k8s``;
* ``tools/chart/generate.py`` calls it with placeholder values to write the Helm chart
  ``charts/porter-lb`` (templates, values.yaml; the uninstall Job as a pre-delete hook) and
  with the defaults to write the static manifests ``deploy/porter-lb.yaml`` and
  ``deploy/porter-lb-uninstall.yaml``; a test fails when a committed file differs from a
  fresh generation.

No object carries a certificate: the controller's leader makes the webhook's serving
certificate, keeps it in a Secret and the ValidatingWebhookConfiguration's caBundle matching
it (porter_lb.webhook.tls), so nothing is re-made when a manifest is rendered again.

Rules that keep the chart generator able to see through this code: a value is only ever
*placed* into a manifest (whole, or inside a string), never computed on — except the values in
``SWITCHES``, whose few choices change the structure (the generator renders each choice and
wraps the results in ``if``/``else``). The CRDs are not here: they are files
(``roles/controller/files/crds/``) that the role applies and the generator copies.

Pure: standard library only, no I/O.
"""

from __future__ import annotations

import copy

NAME = "porter-lb"
PART_OF = {"app.kubernetes.io/part-of": NAME}
FINALIZER = "lb.porter-lb.io/finalizer"
GOBGP_SOCKET_DIR = "/run/porter-lb"
GOBGP_SOCKET = "/run/porter-lb/gobgp.sock"
GOBGP_TARGET = "unix://" + GOBGP_SOCKET
WEBHOOK_SERVICE = "porter-lb-webhook"
WEBHOOK_SECRET = "porter-lb-webhook-tls"
WEBHOOK_CONFIGURATION = "porter-lb"
CONTROLLER_LEASE = "porter-lb-controller"
CONTROLLER_UID = 65532
UNINSTALL = "porter-lb-uninstall"
# The gobgpd probe: its own CLI over the same socket (a Go binary, cheap every few seconds);
# `global` answers as soon as gobgpd serves gRPC, before any BGP instance is started.
GOBGPD_PROBE = ["gobgp", "--target", GOBGP_TARGET, "global"]

# Chart values (camelCase, as Helm charts spell them) and their defaults. The roles' defaults
# (role-prefixed, snake_case) map onto these one to one; a test compares them.
DEFAULT_VALUES = {
    "namespace": "porter-lb-system",
    "loadBalancerClass": "porter-lb.io/porter-lb",
    "logLevel": "info",
    "imagePullPolicy": "IfNotPresent",
    "controller": {
        "enabled": True,
        "image": "ghcr.io/porter-lb/porter-lb-controller:0.1.0",
        "replicas": 2,
        "speaker": "none",
        "hostNetwork": False,
        "metricsPort": 7472,
        "webhookPort": 9443,
        "webhookCertificateDays": 3650,
        "webhookCertificateRenewDays": 30,
        "webhookCaOverlapMinutes": 15,
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [],
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
    },
    "agent": {
        "enabled": True,
        "image": "ghcr.io/porter-lb/porter-lb-agent:0.1.0",
        "hostRules": "local",
        "metricsPort": 7473,
        "heartbeatInterval": 0.25,
        "heartbeatTimeout": 0.75,
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [
            {
                "key": "node-role.kubernetes.io/control-plane",
                "operator": "Exists",
                "effect": "NoSchedule",
            }
        ],
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
    },
}

# Values whose choices change the structure of the manifests, with every choice.
SWITCHES = {"controller.speaker": ("none", "central")}

COMPONENTS = ("controller", "agent")
# The cleanup Job (manifests(values, "uninstall")): rendered by the chart as a pre-delete hook
# and written as deploy/porter-lb-uninstall.yaml; never part of an install.
UNINSTALL_COMPONENT = "uninstall"

# A central speaker and the agents' per-node speakers would both announce every IP (and both
# write BgpPeer status): never install both. The chart fails on such values; the agent role
# refuses to install beside a controller running a central speaker.
CENTRAL_WITH_AGENT = (
    "controller.speaker is central: the agent must not be installed (set agent.enabled false); "
    "the central speaker and the agents' per-node speakers would both announce every IP"
)


def _labels(component):
    return {
        "app.kubernetes.io/name": NAME,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": NAME,
    }


def _selector(component):
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": component}


def _meta(name, component, namespace=None):
    meta = {"name": name, "labels": _labels(component)}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def _rule(groups, resources, verbs, names=None):
    rule = {"apiGroups": list(groups), "resources": list(resources), "verbs": list(verbs)}
    if names:
        rule["resourceNames"] = list(names)
    return rule


GROUP = "network.kubesphere.io"

# What the runtime calls, verb by verb (see runtime/src/porter_lb: informers.PATHS, controller,
# events, speaker, leader_election, heartbeat, webhook). Nothing more.
EVENT_RULE = _rule([""], ["events"], ["create", "get", "patch"])
CONTROLLER_CLUSTER_RULES = [
    # Informer (list+watch); get before a status write; merge patch of metadata.finalizers.
    _rule([""], ["services"], ["get", "list", "watch", "patch"]),
    _rule([""], ["services/status"], ["patch"]),
    # Eip.spec.namespaceSelector needs the namespaces' labels.
    _rule([""], ["namespaces"], ["list", "watch"]),
    # Informer; the webhook lists them too. status.used is written with a guarded PUT.
    _rule([GROUP], ["eips"], ["list", "watch"]),
    _rule([GROUP], ["eips/status"], ["update"]),
    EVENT_RULE,
]
# The speaker (central mode in the controller, node mode in the agent) watches these kinds and
# merge-patches its entry into BgpPeer.status.nodesPeerStatus.
SPEAKER_CLUSTER_RULES = [
    _rule([""], ["services", "nodes"], ["list", "watch"]),
    _rule(["discovery.k8s.io"], ["endpointslices"], ["list", "watch"]),
    _rule([GROUP], ["eips", "bgpconfs", "bgppeers"], ["list", "watch"]),
    _rule([GROUP], ["bgppeers/status"], ["patch"]),
]
# BgpPeer passwords: Secrets are watched in porter-lb's namespace only (a Role, not cluster-wide).
SECRET_RULE = _rule([""], ["secrets"], ["list", "watch"])


# The webhook's certificate: the leader keeps the caBundle of porter-lb's one webhook
# configuration (porter_lb.webhook.tls).
WEBHOOK_CONFIGURATION_RULE = _rule(
    ["admissionregistration.k8s.io"],
    ["validatingwebhookconfigurations"],
    ["get", "update"],
    [WEBHOOK_CONFIGURATION],
)


def _controller_rules(speaker):
    rules = copy.deepcopy(CONTROLLER_CLUSTER_RULES)
    rules.append(copy.deepcopy(WEBHOOK_CONFIGURATION_RULE))
    if speaker == "central":
        rules.extend(copy.deepcopy(SPEAKER_CLUSTER_RULES))
    return rules


def _controller_namespace_rules(speaker):
    rules = [
        # Leader election: read, take over and renew one Lease; create it the first time
        # (create cannot be limited by name).
        _rule(["coordination.k8s.io"], ["leases"], ["get", "update"], [CONTROLLER_LEASE]),
        _rule(["coordination.k8s.io"], ["leases"], ["create"]),
        # The webhook certificate's Secret: the leader reads and rewrites it (and creates it
        # the first time); the webhooks read it.
        _rule([""], ["secrets"], ["get", "update"], [WEBHOOK_SECRET]),
        _rule([""], ["secrets"], ["create"]),
    ]
    if speaker == "central":
        rules.append(copy.deepcopy(SECRET_RULE))
    return rules


AGENT_CLUSTER_RULES = [*SPEAKER_CLUSTER_RULES, EVENT_RULE]
AGENT_NAMESPACE_RULES = [
    # Layer-2 heartbeats: each agent renews its own Lease and watches everyone's.
    _rule(["coordination.k8s.io"], ["leases"], ["get", "create", "patch", "list", "watch"]),
    SECRET_RULE,
]


def _env_field(name, path):
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _gobgpd_container(image, pull_policy, run_as_root):
    """gobgpd serving gRPC on a unix socket in the shared emptyDir, never on TCP."""
    security = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        # Listening on BGP's port 179 needs CAP_NET_BIND_SERVICE (a file capability on the
        # image's gobgpd for the non-root controller pod).
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
    }
    if not run_as_root:
        security["runAsNonRoot"] = True
        security["runAsUser"] = CONTROLLER_UID
    return {
        "name": "gobgpd",
        "image": image,
        "imagePullPolicy": pull_policy,
        # A gobgpd killed outright leaves its socket file in the pod's emptyDir, and the next
        # one could not bind it ("address already in use": a crash loop). The socket is this
        # container's alone: remove a stale one, then become gobgpd.
        "command": ["sh", "-c", 'rm -f "$0" && exec gobgpd "$@"', GOBGP_SOCKET],
        "args": [
            "--api-hosts",
            GOBGP_TARGET,
            "--pprof-disable",
            # GoBGP 4 serves Prometheus metrics on --pprof-host (localhost:6060) even with
            # pprof off; an empty path turns that listener off too.
            "--metrics-path=",
            "--log-plain",
            "--log-level",
            "info",
        ],
        "securityContext": security,
        "volumeMounts": [{"name": "gobgp-socket", "mountPath": GOBGP_SOCKET_DIR}],
        # A hung gobgpd is restarted; the speaker re-programs a new one within a second.
        "livenessProbe": _exec_probe(GOBGPD_PROBE, period=10, failures=3),
        "readinessProbe": _exec_probe(GOBGPD_PROBE, period=5, failures=2),
    }


def _exec_probe(command, period, failures):
    return {
        "exec": {"command": list(command)},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _http_probes(port_name):
    """/healthz (liveness: the process's loops come round) and /readyz (readiness: caches
    synced, gobgpd answers, the leader has caught up) on the metrics port
    (porter_lb.telemetry.health)."""
    return {
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": port_name},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": port_name},
            "periodSeconds": 2,
            "timeoutSeconds": 5,
            "failureThreshold": 2,
        },
    }


def _non_root():
    """The controller's (and the uninstall Job's) containers: non-root, nothing added."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": CONTROLLER_UID,
        "capabilities": {"drop": ["ALL"]},
    }


def _controller_objects(values):
    ns = values["namespace"]
    c = values["controller"]
    speaker = c["speaker"]
    sa = "porter-lb-controller"
    args = [
        "controller",
        "--namespace",
        ns,
        "--load-balancer-class",
        values["loadBalancerClass"],
        "--log-level",
        values["logLevel"],
        "--metrics-address",
        f":{c['metricsPort']}",
        "--leader-elect",
        "--lease-name",
        CONTROLLER_LEASE,
        "--speaker",
        speaker,
        "--webhook-secret",
        WEBHOOK_SECRET,
        "--webhook-configuration",
        WEBHOOK_CONFIGURATION,
        "--webhook-service",
        WEBHOOK_SERVICE,
        "--webhook-certificate-days",
        f"{c['webhookCertificateDays']}",
        "--webhook-certificate-renew-days",
        f"{c['webhookCertificateRenewDays']}",
        "--webhook-ca-overlap-minutes",
        f"{c['webhookCaOverlapMinutes']}",
    ]
    env = [
        _env_field("POD_NAME", "metadata.name"),
        _env_field("POD_NAMESPACE", "metadata.namespace"),
        _env_field("POD_IP", "status.podIP"),
    ]
    restricted = _non_root()
    controller = {
        "name": "controller",
        "image": c["image"],
        "imagePullPolicy": values["imagePullPolicy"],
        "command": ["porter-lb"],
        "args": args,
        "env": env,
        "ports": [{"name": "metrics", "containerPort": c["metricsPort"], "protocol": "TCP"}],
        **_http_probes("metrics"),
        "resources": c["resources"],
        "securityContext": restricted,
    }
    webhook = {
        "name": "webhook",
        "image": c["image"],
        "imagePullPolicy": values["imagePullPolicy"],
        "command": ["porter-lb"],
        "args": [
            "webhook",
            "--cert-secret",
            ns + "/" + WEBHOOK_SECRET,
            "--port",
            f"{c['webhookPort']}",
            "--log-level",
            values["logLevel"],
        ],
        "env": [_env_field("POD_NAMESPACE", "metadata.namespace")],
        "ports": [{"name": "webhook", "containerPort": c["webhookPort"], "protocol": "TCP"}],
        # Alive while it listens; ready once it serves the controller's certificate.
        "livenessProbe": {
            "tcpSocket": {"port": "webhook"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": "webhook", "scheme": "HTTPS"},
            "periodSeconds": 2,
            "failureThreshold": 2,
        },
        "securityContext": copy.deepcopy(restricted),
        # ssl loads a certificate from files only: it passes through a private tmpfs.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    volumes = [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]
    containers = [controller, webhook]
    if speaker == "central":
        args.extend(["--gobgp", GOBGP_TARGET])
        controller["volumeMounts"] = [{"name": "gobgp-socket", "mountPath": GOBGP_SOCKET_DIR}]
        containers.append(_gobgpd_container(c["image"], values["imagePullPolicy"], False))
        volumes.append({"name": "gobgp-socket", "emptyDir": {}})
    selector = _selector("controller")
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta("porter-lb-controller", "controller", ns),
        "spec": {
            "replicas": c["replicas"],
            "selector": {"matchLabels": selector},
            # One replica at a time: the Lease hands over within a retry period.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
            },
            "template": {
                "metadata": {"labels": _labels("controller")},
                "spec": {
                    "serviceAccountName": sa,
                    "hostNetwork": c["hostNetwork"],
                    # ClusterFirst for pod networking, and still cluster DNS on the host's.
                    "dnsPolicy": "ClusterFirstWithHostNet",
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "nodeSelector": c["nodeSelector"],
                    "tolerations": c["tolerations"],
                    "affinity": {
                        "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "weight": 100,
                                    "podAffinityTerm": {
                                        "topologyKey": "kubernetes.io/hostname",
                                        "labelSelector": {"matchLabels": copy.deepcopy(selector)},
                                    },
                                }
                            ]
                        }
                    },
                    "containers": containers,
                    "volumes": volumes,
                },
            },
        },
    }
    if speaker == "central":
        # The speaker restarts gobgpd (SIGTERM, kubelet starts a fresh one) when the BGP
        # instance changes: GoBGP 4 runs one instance per process.
        deployment["spec"]["template"]["spec"]["shareProcessNamespace"] = True
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns, "controller")},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(sa, "controller", ns),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta("porter-lb-controller", "controller"),
            "rules": _controller_rules(speaker),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _meta("porter-lb-controller", "controller"),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "porter-lb-controller",
            },
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta("porter-lb-controller", "controller", ns),
            "rules": _controller_namespace_rules(speaker),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta("porter-lb-controller", "controller", ns),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "porter-lb-controller",
            },
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(WEBHOOK_SERVICE, "webhook", ns),
            "spec": {
                "selector": copy.deepcopy(selector),
                "ports": [
                    {"name": "https", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
                ],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("porter-lb-controller-metrics", "controller", ns),
            "spec": {
                "selector": copy.deepcopy(selector),
                "ports": [
                    {
                        "name": "metrics",
                        "port": c["metricsPort"],
                        "targetPort": "metrics",
                        "protocol": "TCP",
                    }
                ],
            },
        },
        deployment,
        _webhook_configuration(ns),
    ]


def _webhook_configuration(namespace):
    """roles/controller/files/webhook.yaml, filled in (see the reasons written there). No
    caBundle: the controller's leader sets it, and an apply that does not name the field
    (kubectl, Helm, the role) leaves it alone."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": _meta(WEBHOOK_CONFIGURATION, "webhook"),
        "webhooks": [
            {
                "name": "eips.validate.porter-lb.io",
                "admissionReviewVersions": ["v1"],
                "clientConfig": {
                    "service": {
                        "name": WEBHOOK_SERVICE,
                        "namespace": namespace,
                        "path": "/validate-eip",
                        "port": 443,
                    },
                },
                "failurePolicy": "Ignore",
                "matchPolicy": "Equivalent",
                "sideEffects": "None",
                "timeoutSeconds": 5,
                "rules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": ["v1alpha2"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["eips"],
                        "scope": "Cluster",
                    }
                ],
                "matchConditions": [
                    {
                        "name": "not-being-deleted",
                        "expression": "!has(object.metadata.deletionTimestamp)",
                    }
                ],
            }
        ],
    }


def _agent_objects(values):
    ns = values["namespace"]
    a = values["agent"]
    sa = "porter-lb-agent"
    agent = {
        "name": "agent",
        "image": a["image"],
        "imagePullPolicy": values["imagePullPolicy"],
        "command": ["porter-lb"],
        "args": [
            "agent",
            "--namespace",
            ns,
            "--gobgp",
            GOBGP_TARGET,
            "--load-balancer-class",
            values["loadBalancerClass"],
            "--log-level",
            values["logLevel"],
            "--metrics-address",
            f":{a['metricsPort']}",
            # docs/agent.md: the node accepts the EIPs it announces, and answers ARP/NDP for the
            # layer2 ones it wins.
            "--host-rules",
            a["hostRules"],
            "--layer2",
            "--heartbeat-interval",
            f"{a['heartbeatInterval']}",
            "--heartbeat-timeout",
            f"{a['heartbeatTimeout']}",
        ],
        "env": [
            _env_field("NODE_NAME", "spec.nodeName"),
            _env_field("POD_NAMESPACE", "metadata.namespace"),
        ],
        "ports": [{"name": "metrics", "containerPort": a["metricsPort"], "protocol": "TCP"}],
        **_http_probes("metrics"),
        "resources": a["resources"],
        # Root, but with nothing beyond host rules/routes (NET_ADMIN) and ARP/NDP packet
        # sockets (NET_RAW).
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsUser": 0,
            "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]},
        },
        "volumeMounts": [{"name": "gobgp-socket", "mountPath": GOBGP_SOCKET_DIR}],
    }
    gobgpd = _gobgpd_container(a["image"], values["imagePullPolicy"], True)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(sa, "agent", ns)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta("porter-lb-agent", "agent"),
            "rules": copy.deepcopy(AGENT_CLUSTER_RULES),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _meta("porter-lb-agent", "agent"),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "porter-lb-agent",
            },
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta("porter-lb-agent", "agent", ns),
            "rules": copy.deepcopy(AGENT_NAMESPACE_RULES),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta("porter-lb-agent", "agent", ns),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "porter-lb-agent",
            },
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": _meta("porter-lb-agent", "agent", ns),
            "spec": {
                "selector": {"matchLabels": _selector("agent")},
                "updateStrategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 1},
                },
                "template": {
                    "metadata": {"labels": _labels("agent")},
                    "spec": {
                        "serviceAccountName": sa,
                        "hostNetwork": True,
                        "dnsPolicy": "ClusterFirstWithHostNet",
                        "priorityClassName": "system-node-critical",
                        # gobgpd's sessions close on the way out: the router withdraws at once.
                        "terminationGracePeriodSeconds": 10,
                        # The agent restarts gobgpd (SIGTERM, kubelet starts a fresh one) when
                        # the BGP instance changes: GoBGP 4 runs one instance per process.
                        "shareProcessNamespace": True,
                        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                        "nodeSelector": a["nodeSelector"],
                        "tolerations": a["tolerations"],
                        "containers": [agent, gobgpd],
                        "volumes": [{"name": "gobgp-socket", "emptyDir": {}}],
                    },
                },
            },
        },
    ]


# What `porter-lb uninstall` calls (runtime/src/porter_lb/commands/uninstall.py), and nothing more.
UNINSTALL_CLUSTER_RULES = [
    _rule([""], ["services"], ["list", "patch"]),
    _rule(
        ["admissionregistration.k8s.io"],
        ["validatingwebhookconfigurations"],
        ["delete"],
        [WEBHOOK_CONFIGURATION],
    ),
]
UNINSTALL_NAMESPACE_RULES = [
    _rule(["apps"], ["deployments/scale"], ["patch"], ["porter-lb-controller"]),
    _rule([""], ["pods"], ["list"]),
    _rule([""], ["secrets"], ["delete"], [WEBHOOK_SECRET]),
]


def _uninstall_objects(values):
    """The Job that releases what porter-lb holds before it is removed: the webhook
    configuration, the controller (scaled to 0, so nothing adds a finalizer again), porter-lb's
    finalizer on every Service, and the certificate Secret the controller made."""
    ns = values["namespace"]
    c = values["controller"]
    restricted = _non_root()
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(UNINSTALL, "uninstall", ns),
        "spec": {
            "backoffLimit": 3,
            "activeDeadlineSeconds": 300,
            "template": {
                "metadata": {"labels": _labels("uninstall")},
                "spec": {
                    "serviceAccountName": UNINSTALL,
                    "restartPolicy": "Never",
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "nodeSelector": c["nodeSelector"],
                    "tolerations": c["tolerations"],
                    "containers": [
                        {
                            "name": "uninstall",
                            "image": c["image"],
                            "imagePullPolicy": values["imagePullPolicy"],
                            "command": ["porter-lb"],
                            "args": [
                                "uninstall",
                                "--namespace",
                                ns,
                                "--log-level",
                                values["logLevel"],
                            ],
                            "securityContext": restricted,
                        }
                    ],
                },
            },
        },
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(UNINSTALL, "uninstall", ns),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta(UNINSTALL, "uninstall"),
            "rules": copy.deepcopy(UNINSTALL_CLUSTER_RULES),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _meta(UNINSTALL, "uninstall"),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": UNINSTALL,
            },
            "subjects": [{"kind": "ServiceAccount", "name": UNINSTALL, "namespace": ns}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(UNINSTALL, "uninstall", ns),
            "rules": copy.deepcopy(UNINSTALL_NAMESPACE_RULES),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(UNINSTALL, "uninstall", ns),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": UNINSTALL},
            "subjects": [{"kind": "ServiceAccount", "name": UNINSTALL, "namespace": ns}],
        },
        job,
    ]


def manifests(values, component):
    """The objects of `component` ("controller", "agent" or "uninstall") for `values`, in
    apply order.

    `values` has the shape of DEFAULT_VALUES (complete: merge with the defaults first).
    """
    if component == "controller":
        return _controller_objects(values)
    if component == "agent":
        return _agent_objects(values)
    if component == UNINSTALL_COMPONENT:
        return _uninstall_objects(values)
    raise ValueError(
        f"component {component!r}: one of {', '.join((*COMPONENTS, UNINSTALL_COMPONENT))}"
    )


def merged_values(overrides):
    """DEFAULT_VALUES with `overrides` merged in, as Helm merges a values file into the chart's.

    Mappings merge key by key (a key set to None is removed), everything else is replaced.
    """

    def merge(base, extra):
        out = copy.deepcopy(base)
        for key, value in (extra or {}).items():
            if value is None:  # as in Helm: null removes a default key
                out.pop(key, None)
            elif isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out

    return merge(DEFAULT_VALUES, overrides)
