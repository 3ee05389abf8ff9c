"""Local Greengrass runtime for development and tests (never shipped in an artifact)."""
