"""Ports for the nodes the tests, benchmarks and the demo start (:mod:`components.ops.ports`):
outside the kernel's range for outgoing connections, free, and never handed out twice."""

import socket

from components.ops import ports


def test_ports_are_chosen_below_the_kernels_range_for_outgoing_connections(tmp_path):
    range_file = tmp_path / "ip_local_port_range"
    range_file.write_text("32768\t60999\n")
    assert ports.listen_range(range_file) == (10000, 32767)
    range_file.write_text("1024 40000\n")  # no room below: above it
    assert ports.listen_range(range_file) == (40001, 65535)
    assert ports.outgoing_range(tmp_path / "missing") == (32768, 60999)


def test_a_free_port_is_outside_the_outgoing_range_bindable_and_not_given_twice():
    low, high = ports.outgoing_range()
    first, last = ports.listen_range()
    given = [ports.free_port() for _ in range(200)]
    assert len(set(given)) == 200
    for port in given:
        assert first <= port <= last and not low <= port <= high
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_run_is_consecutive_free_ports_that_overlap_no_port_given_before():
    single = ports.free_port()
    runs = [ports.free_port_run(5) for _ in range(50)]
    taken = {single}
    for base in runs:
        run = set(range(base, base + 5))
        assert not run & taken
        taken |= run
        for port in run:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))


def test_a_port_in_use_is_not_given(monkeypatch):
    first, last = ports.listen_range()
    port = next(p for p in range(first, last) if not {p, p + 1} & ports._given)
    with socket.socket() as held:
        held.bind(("127.0.0.1", port))
        held.listen()
        picks = iter([port, port, port + 1])
        monkeypatch.setattr(ports._random, "randint", lambda a, b: next(picks))
        assert ports.free_port() == port + 1
