"""Release hygiene of porter.lb: one version (galaxy.yml = the runtime's pyproject = the
execution environment's pins), the AWX execution environment definition is what ansible-builder
3 accepts and its introspection reads, the changelog fragments lint and render a 0.1.0 release,
and the AWX job templates name playbooks that exist. No container is built and no AWX is used."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "ansible_collections/porter/lb"
META = COLLECTION / "meta"
AWX = REPO / "docs/awx"
BIN = Path(sys.executable).parent


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def collection_version() -> str:
    version = load_yaml(COLLECTION / "galaxy.yml")["version"]
    assert isinstance(version, str) and re.fullmatch(r"\d+\.\d+\.\d+", version), version
    return version


def run(command: list[str], cwd: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=300, check=False, **kwargs
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done


# --- one version --------------------------------------------------------------------------------


def test_collection_and_runtime_have_one_version() -> None:
    runtime = tomllib.loads((REPO / "runtime/pyproject.toml").read_text())
    assert runtime["project"]["version"] == collection_version()


def test_execution_environment_pins_this_version() -> None:
    version = collection_version()
    ee = load_yaml(AWX / "execution-environment.yml")
    assert ee["options"]["tags"] == [f"porter-lb-ee:{version}"]
    pins = (AWX / "requirements.txt").read_text().splitlines()
    assert f"porter-lb=={version}" in pins
    galaxy = load_yaml(AWX / "requirements.yml")["collections"]
    assert galaxy[0] == {"name": f"/build/porter-lb/porter-lb-{version}.tar.gz", "type": "file"}


def test_galaxy_metadata_matches_the_chart() -> None:
    """One home and one licence for the collection, the chart and the runtime."""
    galaxy = load_yaml(COLLECTION / "galaxy.yml")
    chart = load_yaml(REPO / "charts/porter-lb/Chart.yaml")
    runtime = tomllib.loads((REPO / "runtime/pyproject.toml").read_text())["project"]
    assert chart["version"] == chart["appVersion"] == galaxy["version"]
    assert galaxy["repository"] == galaxy["homepage"] == chart["home"]
    assert chart["sources"] == [galaxy["repository"]]
    assert galaxy["issues"] == galaxy["repository"] + "/issues"
    assert galaxy["documentation"].startswith(galaxy["repository"] + "/")
    assert galaxy["license"] == [runtime["license"]] == ["Apache-2.0"]
    assert "Apache License" in (REPO / "LICENSE").read_text()


def test_dependency_floors_are_stated_alike() -> None:
    """galaxy.yml's floors are the ones the READMEs and the install guide give."""
    floors = load_yaml(COLLECTION / "galaxy.yml")["dependencies"]
    assert floors == {"kubernetes.core": ">=5.0.0", "ansible.netcommon": ">=6.0.0"}
    texts = [
        (REPO / "README.md").read_text(),
        (COLLECTION / "README.md").read_text(),
        (REPO / "docs/install.md").read_text(),
    ]
    for text in texts:
        stated = re.findall(r"kubernetes\.core`? \(?>= ?([0-9.]+[0-9])", text)
        assert stated and set(stated) == {"5.0.0"}, stated


# --- execution environment ----------------------------------------------------------------------


def test_collection_declares_its_dependencies_as_ansible_builder_reads_them() -> None:
    """A collection's meta/execution-environment.yml names files relative to its root."""
    ee = load_yaml(META / "execution-environment.yml")
    assert ee["version"] == 3
    assert set(ee["dependencies"]) == {"python", "system"}
    for key, path in ee["dependencies"].items():
        assert (COLLECTION / path).is_file(), f"dependencies.{key}: {path} missing"


def test_awx_execution_environment_parses_and_takes_the_collections_dependencies() -> None:
    ee = load_yaml(AWX / "execution-environment.yml")
    assert ee["version"] == 3
    assert (AWX / ee["dependencies"]["galaxy"]).is_file()
    # porter.lb's Python and system packages come through its own declaration, not a copy;
    # the image adds only the runtime wheel, which is on no index
    assert "system" not in ee["dependencies"]
    extra = (AWX / ee["dependencies"]["python"]).read_text().splitlines()
    assert [line for line in extra if line and not line.startswith("#")] == [
        f"porter-lb=={collection_version()}"
    ]


def test_ansible_builder_creates_the_build_context(tmp_path: Path) -> None:
    context = tmp_path / "context"
    run(
        [
            str(BIN / "ansible-builder"),
            "create",
            "--file",
            str(AWX / "execution-environment.yml"),
            "--context",
            str(context),
        ],
        cwd=REPO,
    )
    containerfile = next(
        p for p in (context / "Containerfile", context / "Dockerfile") if p.exists()
    )
    text = containerfile.read_text()
    assert 'ARG EE_BASE_IMAGE="quay.io/centos/centos:stream9"' in text
    assert "ansible-core==2.21.5 ansible-runner==2.4.3" in text
    assert "ENV PIP_FIND_LINKS=/build/porter-lb" in text
    assert "introspect.py introspect" in text  # the collections' declarations are read
    assert (context / "_build/requirements.yml").read_text() == (
        AWX / "requirements.yml"
    ).read_text()


def test_ansible_builder_introspection_reads_the_collections_requirements(tmp_path: Path) -> None:
    (tmp_path / "ansible_collections/porter").mkdir(parents=True)
    (tmp_path / "ansible_collections/porter/lb").symlink_to(COLLECTION)
    done = run([str(BIN / "ansible-builder"), "introspect", str(tmp_path)], cwd=tmp_path)
    found = yaml.safe_load(done.stdout)
    python = [line.split("#")[0].strip() for line in found["python"]]
    # a Galaxy user's image builds: every requirement is on PyPI, none pins the runtime wheel
    assert not any(line.startswith("porter-lb") for line in python), python
    assert "kubernetes>=33,<38" in python
    assert any(line.startswith("openssh-clients") for line in found["system"])


def test_lab_execution_environment_is_the_users_but_for_base_python_and_galaxy() -> None:
    """What porter_lab.ee builds and the job test runs is docs/awx's definition, changed only
    where a site without a registry and without Galaxy must: base image, package manager,
    Python, where the dependency collections come from."""
    from porter_lab import ee

    users = load_yaml(AWX / "execution-environment.yml")
    lab = ee.lab_definition("localhost/porter-lab/ee-base:x", ["localhost/porter-lb-ee:t"])
    assert lab["images"]["base_image"]["name"] == "localhost/porter-lab/ee-base:x"
    assert lab["options"] == {
        "package_manager_path": "/usr/local/bin/porter-pkgmgr",
        "skip_pip_install": True,
        "tags": ["localhost/porter-lb-ee:t"],
    }
    assert lab["build_arg_defaults"] == {"ANSIBLE_GALAXY_CLI_COLLECTION_OPTS": "--offline"}
    assert lab["dependencies"]["python_interpreter"]["python_path"] == "/usr/bin/python3"
    assert lab["dependencies"]["galaxy"] == "requirements-lab.yml"
    assert {f["dest"] for f in lab["additional_build_files"]} == {"porter-lb", "collections"}
    # everything else exactly the user's
    changed = {"images", "options", "build_arg_defaults", "additional_build_files", "dependencies"}
    assert {k: v for k, v in lab.items() if k not in changed} == {
        k: v for k, v in users.items() if k not in changed
    }
    changed = {"python_interpreter", "galaxy"}
    assert {k: v for k, v in lab["dependencies"].items() if k not in changed} == {
        k: v for k, v in users["dependencies"].items() if k not in changed
    }
    requirements = ee.lab_requirements()["collections"]
    assert requirements[0] == load_yaml(AWX / "requirements.yml")["collections"][0]
    assert [r["name"] for r in requirements[1:]] == [
        "/build/collections/kubernetes/core",
        "/build/collections/ansible/netcommon",
        "/build/collections/ansible/utils",
    ]


# --- changelog ----------------------------------------------------------------------------------


def test_changelog_fragments_lint() -> None:
    done = run([str(BIN / "antsibull-changelog"), "lint"], cwd=COLLECTION)
    assert done.stdout.strip() == ""


def test_changelog_release_renders_the_version(tmp_path: Path) -> None:
    """`antsibull-changelog release` on a copy: the fragments become v0.1.0's notes. (The
    checkout keeps the fragments until the release is tagged; docs/release.md.)"""
    copy = tmp_path / "ansible_collections/porter/lb"
    shutil.copytree(
        COLLECTION,
        copy,
        symlinks=True,
        ignore=shutil.ignore_patterns("output", "__pycache__", ".pytest_cache", "dist"),
    )
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "ANSIBLE_COLLECTIONS_PATH": f"{tmp_path}:{REPO}"}
    run([str(BIN / "antsibull-changelog"), "release", "--date", "2026-11-23"], cwd=copy, env=env)
    notes = (copy / "CHANGELOG.rst").read_text()
    version = collection_version()
    assert f"\nv{version}\n" in notes
    for fragment in (COLLECTION / "changelogs/fragments").glob("*.yml"):
        for section in load_yaml(fragment).values():
            for entry in section if isinstance(section, list) else [section]:
                assert " ".join(entry.split()[:6]) in " ".join(notes.split()), fragment.name
    assert "porter.lb.eip - Manage a porter" in notes  # modules found from version_added


# --- AWX ----------------------------------------------------------------------------------------


def test_awx_job_templates_name_existing_playbooks_and_valid_surveys() -> None:
    templates = json.loads((REPO / "docs/awx/job_templates.json").read_text())["job_templates"]
    assert {t["playbook"] for t in templates} == {
        "playbooks/site.yml",
        "playbooks/pools.yml",
        "playbooks/verify.yml",
    }
    for template in templates:
        assert (REPO / template["playbook"]).is_file(), template["playbook"]
        assert template["job_type"] in ("run", "check")
        survey = template["related"].get("survey_spec")
        assert template["survey_enabled"] == (survey is not None)
        for question in (survey or {}).get("spec", []):
            assert question["type"] in (
                "text",
                "textarea",
                "password",
                "integer",
                "float",
                "multiplechoice",
                "multiselect",
            )
            assert re.fullmatch(r"[a-z_][a-z0-9_]*", question["variable"])
            if question["type"].startswith("multi"):
                assert question["default"] in question["choices"]
