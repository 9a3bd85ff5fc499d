"""``deptcast run`` on a real node: JSON log lines for machines (the quiet set: deptcast's lines
and every warning), and SIGHUP restarting the node as a new instance."""

import json
import os
import signal
import subprocess
import threading

from components.ops.supervisor import PID_FILE
from tests.support.nodes import Node, wait_until
from components.ops.process import DEPTCAST


def test_json_lines_and_a_restart_on_sighup(tmp_path):
    node = Node(tmp_path / "node", name="jsonlog", env={"DEPTCAST_LEGACY_OPEN": "1"})
    proc = subprocess.Popen([DEPTCAST, "run", "--cbdir", str(node.node_dir), "--log-format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=node.env,
                            start_new_session=True)
    lines, errors = [], []

    def read(stream, into):
        for line in stream:
            into.append(line)
    readers = [threading.Thread(target=read, args=(proc.stdout, lines), daemon=True),
               threading.Thread(target=read, args=(proc.stderr, errors), daemon=True)]
    for t in readers:
        t.start()
    try:
        def ready_count():
            return sum('is ready: page http://' in line for line in lines)
        wait_until(lambda: proc.poll() is not None or ready_count() == 1, 90, "the ready line")
        assert proc.poll() is None, "".join(lines + errors)
        events = [json.loads(line) for line in lines]  # every stdout line is one JSON object
        assert all(set(e) == {"time", "level", "process", "namespace", "text"} for e in events)
        assert any(e["level"] == "warn" and "OPEN MODE" in e["text"] for e in events)
        # quiet: Crossbar's own info lines are left out, deptcast's are in
        assert all(e["text"].startswith("deptcast") for e in events if e["level"] == "info")
        assert errors == []  # as JSON, warnings go to stdout with the rest
        first = node.health()
        assert first is not None and first.ok

        pid = int((node.node_dir / PID_FILE).read_text())
        assert pid == proc.pid
        os.kill(pid, signal.SIGHUP)
        wait_until(lambda: ready_count() == 2, 90, "the node to be ready again after SIGHUP")
        second = node.health()
        assert second is not None and second.ok and second.instance != first.instance
        assert any("SIGHUP: the node stopped" in line for line in errors), errors
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        for t in readers:
            t.join(10)
    assert not (node.node_dir / PID_FILE).exists()
