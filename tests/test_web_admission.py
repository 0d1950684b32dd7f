"""The connection table: who is kept, who gives way, and who is refused at the cap."""

from __future__ import annotations

from chamberlain.web.admission import ConnectionTable


def peer(n: int) -> tuple[str, int]:
    return ("127.0.0.1", 40000 + n)


def test_room_below_the_cap_displaces_nobody() -> None:
    table: ConnectionTable[str] = ConnectionTable(2)
    assert table.admit(peer(1), "a").admitted
    second = table.admit(peer(2), "b")
    assert second.admitted and second.evict is None
    assert len(table) == 2


def test_over_the_cap_the_longest_waiting_connection_gives_way() -> None:
    table: ConnectionTable[str] = ConnectionTable(2)
    table.admit(peer(1), "a")
    table.admit(peer(2), "b")
    third = table.admit(peer(3), "c")
    assert third.admitted and third.evict == "a"
    fourth = table.admit(peer(4), "d")
    assert fourth.evict == "b"
    assert (table.evicted, table.refused, len(table)) == (2, 0, 2)


def test_a_connection_being_answered_is_not_dropped() -> None:
    table: ConnectionTable[str] = ConnectionTable(2)
    table.admit(peer(1), "stream")
    table.admit(peer(2), "stalled")
    table.answering(peer(1))
    assert table.admit(peer(3), "new").evict == "stalled"


def test_a_finished_response_starts_the_wait_again_from_now() -> None:
    table: ConnectionTable[str] = ConnectionTable(2)
    table.admit(peer(1), "a")
    table.admit(peer(2), "b")
    table.answering(peer(1))
    table.answered(peer(1))
    # "a" just talked; "b" has waited on its client the longest.
    assert table.admit(peer(3), "c").evict == "b"


def test_when_every_connection_is_answering_the_new_one_is_refused() -> None:
    table: ConnectionTable[str] = ConnectionTable(1)
    table.admit(peer(1), "busy")
    table.answering(peer(1))
    refused = table.admit(peer(2), "new")
    assert not refused.admitted and refused.evict is None
    assert (table.refused, len(table), table.handle(peer(1))) == (1, 1, "busy")


def test_release_forgets_only_the_connection_it_names() -> None:
    table: ConnectionTable[str] = ConnectionTable(4)
    table.admit(peer(1), "old")
    # The same peer address again (the old connection's close is still under way).
    table.admit(peer(1), "new")
    table.release(peer(1), "old")
    assert table.handle(peer(1)) == "new"
    table.release(peer(1), "new")
    assert table.handle(peer(1)) is None and len(table) == 0


def test_news_of_unknown_peers_is_ignored() -> None:
    table: ConnectionTable[str] = ConnectionTable(1)
    table.answering(peer(9))
    table.answered(peer(9))
    table.release(peer(9), "x")
    assert len(table) == 0
