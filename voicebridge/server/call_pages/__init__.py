"""The operator's call pages: ``GET /calls`` lists recent and live calls, each opening the same
timeline page ``voicebridge simulate --html`` writes, rendered from what the call recorded.

``store`` keeps a bounded ring of recent calls, fed by a per-call subscriber; ``disk`` reads
finished calls from ``events.dir`` and ``recording.dir``; ``report`` turns a call's events into
the simulator's ``CallReport``; ``summary`` is a call's row of figures; ``auth`` admits a browser
(HTTP Basic, the API key as password); ``listing`` writes the list page; ``live`` is what a live
call's page adds (its bar and polling script); ``views`` are the routes.
"""
