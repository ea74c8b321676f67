"""The call core: everything about one call that is not a stage, without I/O.

``CallCore`` takes Plivo events, frames observed from the pipeline and clock ticks, and returns
actions (wire messages, pipeline commands) and typed ``CallEvent``s. The playback ledger, the
outbox, barge-in, turns, the reply watch and the false-interruption continuation live beside it.
"""
