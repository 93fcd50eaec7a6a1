"""One real 2-node Ray cluster for a test module (a head and a worker node, 1 CPU and a 200 MB object
store each, no dashboard), started on first use by the ``ray_cluster`` fixture of tests/test_ray_*.py and shut
down at the module's end, so that no Ray process is left behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
STORE = 200 * 1024 * 1024


@pytest.fixture(scope="module", name="ray_cluster")
def cluster_fixture() -> Iterator[Any]:
    """The cluster (``ray.cluster_utils.Cluster``; ``.address`` for ``--address``), with this process
    connected to it as the driver."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    # the workers import the test models' loaders (``geo_data:load_conv``) and must find tests/ and src/
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), str(TESTS.parent / "src"), saved) if p)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": STORE, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1, object_store_memory=STORE)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
