"""``deptcast cluster init`` on the command line (``components.ops.clustercli``): ``--local N``
writes the same cluster as the ``--node`` entries, and values that cannot work are argparse
errors."""

import json

import pytest

from components.ops.cli import main as cli_main
from components.ops.topology import DEFAULT_BASE_PORT, LOCAL_HOST

DB = "postgresql://deptcast@127.0.0.1:5432/deptcast"


def test_cli_local_writes_the_same_cluster_as_the_node_entries(tmp_path, capsys):
    local, listed = tmp_path / "local", tmp_path / "listed"
    common = ["--db", DB, "--lb-listen", "127.0.0.1:9100"]
    assert cli_main(["cluster", "init", "--local", "3", "--base-port", "9200", "--out", str(local), *common]) == 0
    assert cli_main(["cluster", "init", "--node", "n1=127.0.0.1:9200/9203", "--node", "n2=127.0.0.1:9201/9204",
                     "--node", "n3=127.0.0.1:9202/9205", "--out", str(listed), *common]) == 0
    assert json.loads((local / "cluster.json").read_text()) == json.loads((listed / "cluster.json").read_text())
    assert (local / "nginx.conf").read_text() == (listed / "nginx.conf").read_text()
    for name in ("n1", "n2", "n3"):
        # the same config but for the keys each directory made itself
        keys_local = {n: (local / n / "key.pub").read_text().split("public-key-ed25519: ")[1].split()[0]
                      for n in ("n1", "n2", "n3")}
        keys_listed = {n: (listed / n / "key.pub").read_text().split("public-key-ed25519: ")[1].split()[0]
                       for n in ("n1", "n2", "n3")}
        text = (local / name / "config.json").read_text()
        for n in keys_local:
            text = text.replace(keys_local[n], keys_listed[n])
        assert text.replace(str(local), str(listed)) == (listed / name / "config.json").read_text()
    assert "wrote a cluster of 3 nodes" in capsys.readouterr().out


def test_cli_local_without_a_number_is_one_node_per_core(tmp_path, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    out = tmp_path / "c"
    assert cli_main(["cluster", "init", "--local", "--db", DB, "--out", str(out)]) == 0
    nodes = json.loads((out / "cluster.json").read_text())["nodes"]
    assert [(n["name"], n["host"], n["port"]) for n in nodes] == [
        (f"n{i + 1}", LOCAL_HOST, DEFAULT_BASE_PORT + i) for i in range(4)]


@pytest.mark.parametrize("args, says", [
    (["--local", "1"], "argument --local: 1: a local cluster has 2 to"),
    (["--local", "many"], "argument --local: 'many': give a number of nodes"),
    (["--local", "2", "--node", "n1=127.0.0.1:9001"], "not allowed with argument"),
    ([], "one of the arguments --node --local is required"),
    (["--local", "2", "--base-port", "70000"], "argument --base-port: '70000': a port from 1 to 65535"),
    (["--local", "2", "--base-port", "65533"], "must lie from 1 to 65535"),
    (["--local", "2", "--base-port", "7999"], "includes the load balancer's port 8000"),
    (["--local", "2", "--base-port", "8998", "--lb-listen", "127.0.0.1:9000"], "load balancer's port 9000"),
    (["--node", "n1=127.0.0.1:9001", "--node", "n2=127.0.0.1:9002", "--base-port", "9000"],
     "--base-port goes with --local"),
])
def test_cli_local_bad_values_are_argparse_errors(tmp_path, capsys, args, says):
    out = tmp_path / "c"
    with pytest.raises(SystemExit) as exited:
        cli_main(["cluster", "init", "--db", DB, "--out", str(out), *args])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "usage: deptcast cluster init" in err and says in err and "Traceback" not in err
    assert not out.exists()
