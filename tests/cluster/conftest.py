"""One real 3-node cluster (nginx in front, a PostgreSQL schema of its own) shared by the
modules whose tests leave it whole: ``test_cluster``, ``test_link_topics``, ``test_linkdrop``
and ``test_revoke_cluster``. Each test uses departments of its own; a test may stop, kill or
restart a node, or drop a link, but starts it again. Modules whose cluster differs (TLS links,
nodes under ``deptcast run``, ``cluster init --local``) make their own.
"""

import pytest
import pytest_twisted

from tests.support.cluster import connect_inspectors, running_cluster


@pytest.fixture(scope="package")
def shared_cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("cluster"), "deptcast_cluster") as c:
        print(f"\ncluster of 3 started in {c.start_seconds:.1f} s; gate: "
              + ", ".join(f"{n}={c.gate_seconds(n)}" for n in c.nodes))
        yield c


@pytest.fixture(scope="module")
def cluster(shared_cluster):
    """The shared cluster, whole for the module: every node serving, every peer's link up (a
    module before may have restarted a node, whose peers' links come back on their own)."""
    for node in shared_cluster.nodes.values():
        node.wait_ready(90.0, "healthy")
    return shared_cluster


@pytest_twisted.async_yield_fixture(scope="module")
async def inspectors(cluster):
    """A meta API session on every node of the module's cluster (the tests' inspector socket)."""
    out = await connect_inspectors(cluster)
    yield out
    for inspector in out.values():
        inspector.leave()
