"""Code shared by every VQI component; vendored into each component artifact at build time."""

__version__ = "1.0.0"
