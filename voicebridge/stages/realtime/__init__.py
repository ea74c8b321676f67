"""Speech-to-speech stages: a realtime voice model that hears the caller and answers with audio.

``openai_realtime`` (OpenAI's Realtime API) and ``gemini_live`` (Google's Gemini Live API) take
the roles of transcriber, dialogue and speaker at once (role ``speech_to_speech``). What they
share lives here, one job per module: the stage around one model session (``s2s_stage``: its
reader, reconnects, the call's own lines, the keypad), the session socket's ordered writer
(``session_link``), the audio formats to and from the model (``model_audio``), cutting a
reply's audio into pieces the ledger can acknowledge (``reply_pieces``), the shared parameters
(``params``) and the heard history replayed after a reconnect (``replay``). Their tools are the
``llm`` stage's (:mod:`voicebridge.stages.dialogue.toolbox`).
"""
