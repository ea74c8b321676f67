"""The parts of the call page that ``voicebridge simulate --html`` writes.

:mod:`voicebridge.sim.html_report` assembles them: ``timeline`` lays the call out on one time
axis, ``waveform`` reduces the audio to what the eye needs, ``audio`` embeds what the ear needs,
``tables`` writes the figures and the conversation, ``assets`` holds the page's CSS and script.
"""
