"""Scenario tests: a scripted caller against a pipeline, with expectations on what the caller
experienced (replies heard, latency, dead air, who hung up). See docs/testing.md."""
