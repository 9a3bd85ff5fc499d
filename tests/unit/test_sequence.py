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
