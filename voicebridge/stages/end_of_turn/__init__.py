"""The end of the caller's turn: a pause, the words said up to it, optionally an audio model.

``policy`` decides (sans-I/O), ``text_cues`` judges the words, ``words`` carries them from the
transcriber back to the ``vad`` stage, which drives it all; ``smart_turn`` runs the opt-in model.
"""
