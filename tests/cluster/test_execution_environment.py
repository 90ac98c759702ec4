"""The AWX execution environment, built here (porter_lab.ee: ansible-builder on a local base,
with the collection tarball and the runtime wheel) and used as AWX uses it: the "add an address
pool" job template's playbook run by `ansible-runner` inside the image, against the session's
real cluster, with the Kubernetes credential as AWX injects it (`K8S_AUTH_HOST`,
`K8S_AUTH_API_KEY` of a ServiceAccount token, `K8S_AUTH_SSL_CA_CERT`, `K8S_AUTH_VERIFY_SSL`),
the template's extra variables and the survey's answers as extra vars, and the job types Check
and Run with Show Changes.

Expected: a Check job with Show Changes reports the one change and shows it, and writes
nothing; a Run job creates exactly the Eip the survey describes (changed 1); the same Run again
changes nothing (changed 0), and so does the Check.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from porter_lab import ee
from porter_lab.clusterbed import ClusterBed
from porter_lab.paths import REPO

TEMPLATES = json.loads((REPO / "docs/awx/job_templates.json").read_text())["job_templates"]
ACCOUNT = "awx-job"
CRDS = REPO / "ansible_collections/porter/lb/roles/controller/files/crds"
POOL = "awx-survey-pool"


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
    template = next(t for t in TEMPLATES if t["playbook"] == "playbooks/pools.yml")
    survey = {q["variable"] for q in template["related"]["survey_spec"]["spec"]}
    answers = {
        "pool_name": POOL,
        "pool_address": "198.18.40.0/28",
        "pool_protocol": "bgp",
        "pool_interface": "",
        "eip_pools_wait": "false",
    }
    assert set(answers) == survey  # every question answered, nothing else
    extra_vars = (yaml.safe_load(template["extra_vars"]) or {}) | answers
    data = private_data_dir(bed, tmp_path)
    netns = bed.topology.router_ns

    def job(*, check: bool) -> ee.JobResult:
        result = ee.run_job(
            image,
            data,
            template["playbook"],
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
