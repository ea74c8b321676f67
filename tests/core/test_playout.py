import numpy as np

from voicebridge.sim.playout import PlayoutModel


def test_checkpoint_acked_only_after_its_audio_played() -> None:
    model = PlayoutModel(8000)
    model.play(np.ones(8000, np.int16), now=0.0)  # 1 s
    assert model.checkpoint("a", now=0.0) == []
    assert model.advance(0.5) == []
    assert model.advance(1.0) == ["a"]
    assert model.idle


def test_checkpoint_with_nothing_buffered_acks_at_once() -> None:
    model = PlayoutModel(8000)
    assert model.checkpoint("now", now=3.0) == ["now"]


def test_clear_drops_buffer_and_its_checkpoints_never_ack() -> None:
    model = PlayoutModel(8000)
    model.play(np.ones(8000, np.int16), 0.0)
    model.checkpoint("first", 0.0)
    model.play(np.ones(8000, np.int16), 0.0)
    model.checkpoint("second", 0.0)
    assert model.advance(1.0) == ["first"]
    assert model.clear(1.25) == ["second"]
    assert model.advance(5.0) == []
    assert model.dropped_samples == 6000
    # Audio sent after the clear plays and acks normally.
    model.play(np.ones(800, np.int16), 5.0)
    model.checkpoint("after", 5.0)
    assert model.advance(5.1) == ["after"]


def test_heard_track_places_audio_on_the_timeline() -> None:
    model = PlayoutModel(1000)
    model.play(np.full(500, 7, np.int16), now=1.0)
    model.advance(2.0)
    track = model.heard_track(2.0)
    assert track[:1000].sum() == 0
    assert (track[1000:1500] == 7).all()
    assert track[1500:].sum() == 0
