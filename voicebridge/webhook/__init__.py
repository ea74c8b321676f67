"""The post-call webhook: a per-call subscriber assembles one JSON document when the call ends,
and one service-wide worker signs it, keeps it on disk and delivers it at least once.

See docs/webhooks.md for the document's schema and how a receiver checks the signature.
"""
