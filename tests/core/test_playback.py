from voicebridge.call.ledger import (
    PieceState,
    PlaybackLedger,
    checkpoint_name,
    checkpoint_turn,
    words_heard,
)


def ledger_with_two_pieces() -> PlaybackLedger:
    ledger = PlaybackLedger(ack_grace_s=1.0)
    ledger.record(1, "Hello there.", 1000, now=0.0, last=False)
    ledger.record(1, "We open at nine tomorrow morning.", 2000, now=0.0, last=True)
    return ledger


def test_checkpoint_names_follow_turn_and_piece() -> None:
    ledger = ledger_with_two_pieces()
    assert [p.name for p in ledger.pending] == ["turn-1/piece-1", "turn-1/piece-2"]
    assert [p.starts_at for p in ledger.pending] == [0.0, 1.0]  # played back to back


def test_the_turn_is_read_back_from_a_checkpoint_name() -> None:
    assert checkpoint_turn(checkpoint_name(12, 3)) == 12
    for other in ("", "turn-x/piece-1", "turn-1", "turn-1/piece-", "mark-7", "turn--1/piece-2"):
        assert checkpoint_turn(other) is None, other


def test_ack_settles_piece_and_earlier_ones_in_order() -> None:
    ledger = ledger_with_two_pieces()
    result = ledger.ack("turn-1/piece-2", now=3.0)
    assert result.piece is not None and result.turn_complete
    assert all(p.state is PieceState.PLAYED for p in (ledger.piece("turn-1/piece-1"), result.piece))
    assert not ledger.pending


def test_unknown_and_duplicate_acks_are_ignored_with_reason() -> None:
    ledger = ledger_with_two_pieces()
    assert ledger.ack("never-sent", 0.5).ignored_reason == "no checkpoint of that name was sent"
    ledger.ack("turn-1/piece-1", 1.0)
    dup = ledger.ack("turn-1/piece-1", 1.1)
    assert dup.piece is None and "already settled" in (dup.ignored_reason or "")


def test_ack_for_a_checkpoint_not_sent_yet_is_ignored() -> None:
    """Found by fuzzing: names are predictable, and an ack for a piece still being sent marked
    all its words heard (and everything before it played)."""
    ledger = PlaybackLedger()
    first = ledger.record(1, "Hello there.", 500, now=0.0, last=False)
    piece = ledger.begin(1, "We open at nine tomorrow morning.", 2000, now=0.0)
    ledger.sent(piece, 200, now=0.0)
    result = ledger.ack(piece.name, now=0.1)
    assert result.piece is None and "not been sent yet" in (result.ignored_reason or "")
    assert piece.state is PieceState.PENDING and piece.heard_text == ""
    assert first.state is PieceState.PENDING  # the early ack settles nothing before it either
    ledger.sent(piece, 1800, now=0.2)
    ledger.finish(piece, now=0.2)
    assert ledger.ack(piece.name, now=2.6).piece is piece


def test_clear_settles_pending_and_reports_words_heard_of_playing_piece() -> None:
    ledger = ledger_with_two_pieces()
    ledger.ack("turn-1/piece-1", now=1.0)
    result = ledger.clear(now=2.0)  # halfway through the 2 s second piece
    assert [p.name for p in result.cleared] == ["turn-1/piece-2"]
    assert result.interrupted is not None
    # 17 of the text's 34 characters (words plus spaces) have played: 4 whole words.
    assert result.interrupted.heard_text == "We open at nine"
    assert result.interrupted.state is PieceState.CLEARED
    # Acks for cleared pieces can never count.
    assert ledger.ack("turn-1/piece-2", 3.0).piece is None


def test_lost_acks_expire_after_duration_plus_grace() -> None:
    ledger = ledger_with_two_pieces()
    assert ledger.expire_overdue(1.5) == []
    expired = ledger.expire_overdue(2.0)
    assert [p.name for p in expired] == ["turn-1/piece-1"]
    assert ledger.next_deadline() == 4.0


def test_words_heard_is_proportional_to_time_played() -> None:
    ledger = PlaybackLedger()
    piece = ledger.record(1, "one two three four", 4000, now=0.0, last=True)
    assert words_heard(piece, 0.0) == ""
    assert words_heard(piece, 2.0) == "one two"
    assert words_heard(piece, 10.0) == "one two three four"
