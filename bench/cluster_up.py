"""Benchmark, on the real cluster: how long the lab takes, and what porter-lb's pods hold.

- image builds (porter_lab.images): warm (every tag present: hashing only); with --cold, first
  cold: the lab's images, their build cache and the debootstrapped root removed, so the base is
  debootstrapped again and every image built from scratch;
- the cluster up from nothing with the images cached: namespaces, control plane, the images
  imported into three nodes' containerd, three Nodes Ready (target: <= 90 s), and a router;
- porter-lb installed with Helm until every pod is Ready;
- RSS of each porter-lb container on the nodes (controller, webhook, agent, gobgpd), read from
  /proc for the container's process, after 30 s idle with three Services announced.

    python bench/cluster_up.py [--cold]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import report

from porter_lab import images
from porter_lab.clusterbed import ClusterBed, cluster_bed
from porter_lab.paths import cache_dir
from porter_lab.topology import run_id


def remove_images() -> None:
    """Everything porter_lab.images made: tags, build cache, archives, the root file system."""
    listed = images.podman("images", "--format", "{{.Repository}}:{{.Tag}}")
    ours = [r for r in listed.split() if "porter-lb" in r or "porter-lab" in r]
    if ours:
        images.podman("rmi", "--force", *ours)
    images.podman("image", "prune", "--all", "--force")
    for path in (cache_dir() / "images").glob("*.tar"):
        path.unlink()


def container_rss(bed: ClusterBed) -> dict[str, list[float]]:
    """MiB of resident memory by container name (controller, webhook, agent, gobgpd), one
    value per pod, from /proc/<pid>/status of each container's process."""
    pids: dict[str, int] = {}
    for node in bed.cluster.nodes:
        tasks = node.ctr("tasks", "ls").stdout.splitlines()[1:]
        for line in tasks:
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                pids[fields[0]] = int(fields[1])
    found: dict[str, list[float]] = {}
    for pod in bed.porter_pods():
        for status in pod["status"]["containerStatuses"]:
            container_id = status["containerID"].split("//", 1)[1]
            pid = pids[container_id]
            rss_kib = next(
                int(line.split()[1])
                for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:")
            )
            found.setdefault(status["name"], []).append(rss_kib / 1024)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cold", action="store_true", help="time a cold image build first")
    args = parser.parse_args()
    rows = []
    extra: dict[str, object] = {}
    if args.cold:
        remove_images()
        started = time.monotonic()
        images.build_all(log=lambda line: print(line, flush=True))
        cold = time.monotonic() - started
        rows.append({"metric": "image builds, cold", "value": cold, "unit": "s", "target": None})
    started = time.monotonic()
    images.build_all(log=lambda line: None)
    rows.append(
        {
            "metric": "image builds, warm",
            "value": time.monotonic() - started,
            "unit": "s",
            "target": None,
        }
    )
    phases: dict[str, float] = {}

    def log(line: str) -> None:
        print(line, flush=True)
        phases[line.strip()] = time.monotonic() - up_started

    up_started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="porter-lb-bench-", dir="/var/tmp") as tmp,
        cluster_bed("u" + run_id(), Path(tmp), log=log) as bed,
    ):
        up = time.monotonic() - up_started
        rows.append({"metric": "cluster up (3 nodes Ready, router)", "value": up, "unit": "s",
                     "target": 90.0})  # fmt: skip
        started = time.monotonic()
        bed.helm("install", "porter-lb", "charts/porter-lb", *bed.image_values(), "--wait")
        bed.wait_porter_ready()
        rows.append(
            {
                "metric": "helm install -> every porter-lb pod Ready",
                "value": time.monotonic() - started,
                "unit": "s",
                "target": None,
            }
        )
        bed.apply(bed.bgp_objects())
        for name, replicas in (("one", 1), ("two", 2), ("three", 3)):
            bed.deploy_app(name, "bench", replicas)
        for name in ("one", "two", "three"):
            bed.service_ip(name, "bench")
        time.sleep(30)  # idle: what the pods hold at rest (a measurement, not a synchronisation)
        rss = container_rss(bed)
        for name, values in sorted(rss.items()):
            rows.append(
                {
                    "metric": f"RSS {name} (median of {len(values)} pods)",
                    "value": statistics.median(values),
                    "unit": "MiB",
                    "target": None,
                }
            )
        extra["rss_mib"] = {k: [round(v, 1) for v in vs] for k, vs in rss.items()}
        extra["cluster_up_log"] = {k: round(v, 1) for k, v in phases.items()}
        bed.helm("uninstall", "porter-lb", "--wait")
    extra["images"] = subprocess.run(
        ["podman", "images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}"],
        env=images.podman_env(),
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split("\n")
    report("cluster_up", rows, extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
