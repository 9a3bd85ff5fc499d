"""Samples of a node's ``/metrics`` (Prometheus' text format) for the tests."""

from tests.support import raw


def sample(text: str, name: str, **labels: str) -> float:
    """One sample of the Prometheus text ``text`` (0 when absent)."""
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split(" ")[1])
    return 0.0


def metric(node, name: str, **labels: str) -> float:
    """One sample of ``node``'s ``/metrics``, asked now (0 when absent)."""
    status, body = raw.http(node.port, "GET", "/metrics")
    assert status == 200
    return sample(body.decode(), name, **labels)
