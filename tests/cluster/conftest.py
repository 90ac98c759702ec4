"""The real-cluster tier: porter-lb installed the ways users install it (Helm, the static
manifest, the roles through site.yml), as pods on a cluster of three kubelet nodes in network
namespaces, with a BIRD router in front (porter_lab.clusterbed); and the failures a real
cluster has. One cluster serves the whole session (each module installs porter-lb and removes
it again); the demo test brings up a lab of its own through scripts/demo.sh.

Nothing here skips: a missing component is a failure naming what to install.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from porter_lab.clusterbed import ClusterBed, cluster_bed
from porter_lab.topology import run_id


@pytest.fixture(scope="session")
def bed(bed_prerequisites: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterBed]:
    with cluster_bed("k" + run_id(), tmp_path_factory.mktemp("cluster")) as started:
        yield started
