"""Free ports for the nodes, balancers and databases that the tests and the benchmarks start
on the loopback interface.

A port found free is only free at that moment. Ports are therefore chosen *below* the range the
kernel takes outgoing connections' ports from (``net.ipv4.ip_local_port_range``): the clients,
router links and database pools these programs open cannot take a chosen port between its choice
and the listen. A port chosen by binding port 0 comes from that very range, and on a busy machine
a client's connection took one before the node listened."""

import contextlib
import random
import socket
from pathlib import Path
from typing import Set, Tuple

#: the lowest port handed out (under it: well-known services such as PostgreSQL and Redis)
LOWEST = 10000
#: where the kernel keeps its range of ports for outgoing connections
LOCAL_PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")

_random = random.SystemRandom()
#: ports this process handed out: not handed out again, even once closed
_given: Set[int] = set()


def outgoing_range(path: Path = LOCAL_PORT_RANGE) -> Tuple[int, int]:
    """The kernel's range of ports for outgoing connections (Linux's default where unknown)."""
    try:
        low, high = (int(v) for v in path.read_text().split()[:2])
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def listen_range(path: Path = LOCAL_PORT_RANGE) -> Tuple[int, int]:
    """Where ports are chosen: ``[first, last]``, outside :func:`outgoing_range`."""
    low, high = outgoing_range(path)
    if low - LOWEST >= 2000:
        return LOWEST, low - 1
    return high + 1, 65535


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_run(count: int, tries: int = 500) -> int:
    """The first of ``count`` consecutive ports that are free now and were not handed out
    before by this process (``cluster init --local`` gives its nodes consecutive ports)."""
    first, last = listen_range()
    for _ in range(tries):
        base = _random.randint(first, last - count + 1)
        ports = range(base, base + count)
        if any(p in _given for p in ports):
            continue
        with contextlib.ExitStack() as held:
            try:
                for port in ports:
                    s = held.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.update(ports)
        return base
    raise RuntimeError(f"no {count} consecutive free ports between {first} and {last} in {tries} tries")


def free_port() -> int:
    """A port that is free now and was not handed out before by this process."""
    return free_port_run(1)
