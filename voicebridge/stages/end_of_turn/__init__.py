"""The end of the caller's turn: a pause, a model of whether the caller is done, early words.

``policy`` decides (sans-I/O), ``smart_turn`` runs the model, ``text_cues`` reads the words,
``words`` carries them from the transcriber back to the ``vad`` stage, which drives it all.
"""
