"""Unit tests of components.core.sequence: a topic's envelopes in seq order, each once."""

from components.core.sequence import TopicSequence, seq_of


def test_seq_of_reads_only_whole_positive_numbers():
    assert seq_of({"seq": 3}) == 3
    for bad in [{"seq": 0}, {"seq": -1}, {"seq": True}, {"seq": "3"}, {"seq": 2.0}, {}, None, "x"]:
        assert seq_of(bad) is None


def test_in_order_items_go_straight_through():
    order = TopicSequence(5)
    assert order.offer(5, "e5") == ["e5"]
    assert order.offer(6, "e6") == ["e6"]
    assert order.next == 7 and not order.has_gap and order.missing() is None


def test_duplicates_and_older_items_are_dropped():
    order = TopicSequence(5)
    assert order.offer(4, "old") == []     # before the subscriber's time
    assert order.offer(5, "e5") == ["e5"]
    assert order.offer(5, "e5 again") == []
    assert order.duplicates == 2


def test_a_jump_holds_until_the_missing_ones_come_then_all_go_in_order():
    order = TopicSequence(1)
    assert order.offer(1, "e1") == ["e1"]
    assert order.offer(4, "e4") == [] and order.offer(3, "e3") == []
    assert order.offer(4, "e4 again") == []          # held already: still once
    assert order.has_gap and order.missing() == (2, 2)
    assert order.offer(2, "e2") == ["e2", "e3", "e4"]
    assert order.next == 5 and not order.has_gap and order.duplicates == 1


def test_an_unknown_start_is_set_by_the_first_item():
    order = TopicSequence()
    assert order.missing() is None
    assert order.offer(9, "e9") == ["e9"]
    assert order.offer(11, "e11") == [] and order.missing() == (10, 10)


def test_items_without_seq_pass_through_untouched():
    order = TopicSequence(3)
    assert order.offer(None, "plain") == ["plain"]
    assert order.next == 3


def test_giving_up_delivers_the_held_items_in_order_and_counts_the_skipped():
    order = TopicSequence(1)
    order.offer(4, "e4")
    order.offer(7, "e7")
    assert order.give_up() == ["e4", "e7"]
    assert order.next == 8 and order.skipped == 3 + 2 and not order.has_gap
    assert order.offer(5, "late e5") == []
    assert order.give_up() == []


def test_held_items_wait_until_released_and_a_repeat_of_one_is_a_duplicate():
    order = TopicSequence(1)
    assert order.hold(1, "e1") and order.hold(3, "e3")
    assert not order.hold(3, "e3 again") and order.duplicates == 1
    assert order.gaps() == [(2, 2)] and order.position == 0
    assert order.release() == ["e1"] and order.position == 1
    assert order.hold(2, "e2") and order.release() == ["e2", "e3"] and order.gaps() == []


def test_an_item_from_a_complete_read_goes_at_once_and_gives_up_what_the_read_skipped():
    order = TopicSequence(1)
    order.hold(3, "live e3")
    order.hold(7, "live e7")
    # the read brings 5: 1, 2 and 4 are not stored; 3 is, and goes first
    assert order.take(5, "e5") == ["live e3", "e5"]
    assert order.skipped == 3 and order.position == 5 and order.held == {7: "live e7"}
    assert order.take(7, "e7") == ["e7"] and order.duplicates == 1  # the live copy is dropped
    assert order.take(6, "e6 again") == [] and order.duplicates == 2


def test_an_unknown_start_drops_what_is_held_before_it():
    order = TopicSequence()
    assert order.position is None and order.gaps() == []
    order.hold(4, "e4")
    order.hold(6, "e6")
    order.start(4)
    assert order.release() == [] and order.held == {6: "e6"} and order.skipped == 0
    assert order.gaps() == [(5, 5)]


def test_skip_to_moves_forward_only_and_counts_what_it_passes():
    order = TopicSequence(3)
    order.hold(5, "e5")
    order.hold(9, "e9")
    order.skip_to(6)
    assert order.position == 6 and order.skipped == 4 and order.held == {9: "e9"}
    order.skip_to(4)
    assert order.position == 6 and order.skipped == 4
    TopicSequence().skip_to(5)  # an unknown start stays unknown


def test_giving_up_below_a_number_keeps_the_holes_above_it():
    order = TopicSequence(1)
    for seq in (3, 4, 8):
        order.hold(seq, f"e{seq}")
    assert order.give_up(5) == ["e3", "e4"]
    assert order.skipped == 2 and order.position == 4 and order.gaps() == [(5, 7)]


def test_a_gap_waits_its_grace_from_when_it_was_noticed():
    order = TopicSequence(2)
    order.note_gap(1.0)
    assert order.gap_since is None  # nothing held: no gap
    order.offer(3, "e3")
    order.note_gap(2.0)
    order.note_gap(2.5)  # already open: its grace started at 2.0
    assert not order.due(2.9, 1.0) and order.due(3.0, 1.0)
    order.restart_gap(4.0)
    assert not order.due(4.5, 1.0) and order.due(5.0, 1.0)
    assert order.offer(2, "e2") == ["e2", "e3"] and order.gap_since is None  # closed
    order.offer(5, "e5")
    order.note_gap(6.0)
    order.drop_held()
    assert order.held == {} and order.gap_since is None and order.position == 3
