"""``deptcast cluster restart``: restart the nodes of a cluster one at a time.

For each node in turn: run the operator's restart command for it (a template: e.g.
``ssh {host} sudo systemctl restart deptcast``), then wait until the node answers ``/health``
200 as a *new* instance (its ``instance`` id changed: the old process is gone and the new one
serves, with its links to every peer up both ways) and every other node is healthy again (their
links to it are back), before the next node. A stopping node drains (its clients reconnect at
once, through the balancer, to the others), and a starting node holds sends until its peers'
links are up: clients lose nothing and see each message once.

Before it starts, every node must be healthy (``--force`` skips that check). It stops at the
first node that does not come back in time and says so (exit code 1): the cluster is then one
node short, not several.
"""

import argparse
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from components.ops.probe import Health, get_health
from components.ops.status import add_node_arguments, cluster_status, nodes_of

#: seconds between two looks at the nodes' health while waiting
POLL = 0.5


class RestartFailed(Exception):
    """A node did not come back healthy in time (or its restart command failed)."""


def command_for(template: str, node: Any, cluster_dir: Optional[Path]) -> str:
    """The shell command restarting ``node``: ``template`` with ``{node}``, ``{host}``,
    ``{port}`` and ``{dir}`` (the node's directory under the cluster directory) filled in,
    each quoted for the shell.

    :rtype: str
    """
    directory = str(Path(cluster_dir) / node.name) if cluster_dir is not None else ""
    values = {"node": node.name, "host": node.host, "port": str(node.port), "dir": directory}
    return template.format(**{k: shlex.quote(v) for k, v in values.items()})


def shell_restart(template: str, cluster_dir: Optional[Path], timeout: float) -> Callable[[Any], None]:
    """A restart function that runs ``template`` for a node through the shell.

    :raises RestartFailed: when the command fails or outlives ``timeout``
    """
    def restart(node: Any) -> None:
        command = command_for(template, node, cluster_dir)
        try:
            done = subprocess.run(command, shell=True, timeout=timeout, capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            raise RestartFailed(f"{node.name}: `{command}` did not finish in {timeout:g} s") from None
        if done.returncode != 0:
            raise RestartFailed(f"{node.name}: `{command}` exited with {done.returncode}: "
                                f"{(done.stderr or done.stdout).strip()[-500:]}")
    return restart


def _healths(nodes: Sequence[Any], timeout: float) -> Dict[str, Optional[Health]]:
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        return dict(zip([n.name for n in nodes], pool.map(lambda n: get_health(n.host, n.port, timeout=timeout),
                                                          nodes)))


def rolling_restart(nodes: Sequence[Any], restart: Callable[[Any], None], timeout: float = 180.0,
                    say: Callable[[str], None] = print, force: bool = False, poll: float = POLL) -> List[float]:
    """Restart ``nodes`` one at a time (see the module's docstring).

    :param restart: restarts one node (returns once the command has been given)
    :param timeout: seconds each node has to come back healthy
    :returns: per node, the seconds from its restart command until the cluster was healthy again
    :raises RestartFailed: naming the node that did not come back
    """
    if not force:
        lines, healthy = cluster_status(nodes)
        if not healthy:
            raise RestartFailed("not every node is healthy; fix that first (or --force):\n  " + "\n  ".join(lines))
    took = []
    for i, node in enumerate(nodes, 1):
        before = get_health(node.host, node.port)
        old = before.instance if before is not None else None
        say(f"[{i}/{len(nodes)}] restarting {node.name} ({node.address}) ...")
        started = time.monotonic()
        restart(node)
        gone_at: Optional[float] = None
        while True:
            healths = _healths(nodes, timeout=2.0)
            mine = healths[node.name]
            if mine is None or mine.instance != old:
                gone_at = gone_at or time.monotonic()
            back = mine is not None and mine.ok and mine.instance != old
            if back and all(h is not None and h.ok for h in healths.values()):
                break
            if time.monotonic() - started > timeout:
                shown = mine.body.get("problems") if mine is not None else "no answer on /health"
                raise RestartFailed(f"{node.name} is not back healthy {timeout:g} s after its restart ({shown}); "
                                    f"stopped here: {len(nodes) - i} node(s) not restarted")
            time.sleep(poll)
        seconds = time.monotonic() - started
        took.append(seconds)
        assert mine is not None  # back: it answered
        say(f"[{i}/{len(nodes)}] {node.name} is back (instance {mine.instance}) and every node is healthy, "
            f"{seconds:.1f} s after its restart")
    return took


def _cmd_restart(args: argparse.Namespace) -> int:
    nodes = nodes_of(args)
    cluster_dir = None if args.node else Path(args.cluster)
    try:
        took = rolling_restart(nodes, shell_restart(args.command, cluster_dir, args.timeout),
                               timeout=args.timeout, force=args.force,
                               say=lambda line: print(line, flush=True))
    except RestartFailed as e:
        print(f"deptcast cluster restart: {e}", flush=True)
        return 1
    print(f"restarted {len(nodes)} nodes one at a time in {sum(took):.1f} s", flush=True)
    return 0


def add_cli(csub: Any) -> None:
    """Add ``deptcast cluster restart``."""
    restart = csub.add_parser(
        "restart", help="restart the nodes one at a time, each back healthy with its links before the next",
        description="Restart every node in turn with --command, waiting after each until it answers /health "
                    "200 as a new process with its links up and every other node is healthy again. Stops at "
                    "the first node that does not come back (exit code 1).")
    add_node_arguments(restart)
    restart.add_argument("--command", required=True,
                         help="the shell command restarting one node; {node}, {host}, {port} and {dir} are filled "
                              "in, e.g. 'ssh {host} sudo systemctl restart deptcast', or for nodes run by "
                              "`deptcast run` on this machine: 'kill -HUP $(cat {dir}/deptcast-run.pid)'")
    restart.add_argument("--timeout", type=float, default=180.0,
                         help="seconds each node has to come back healthy (default 180)")
    restart.add_argument("--force", action="store_true", help="start even if some node is unwell now")
    restart.set_defaults(func=_cmd_restart)
