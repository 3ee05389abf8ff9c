"""The test suite (a package, so test helpers import as tests.<folder>.<module>)."""
