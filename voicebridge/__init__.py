"""voicebridge: a Plivo phone call as a live conversation with a virtual agent."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("voicebridge")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
