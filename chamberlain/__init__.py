"""Chamberlain: a job gateway that runs plugins as durable, supervised jobs.

The package is layered; docs/ARCHITECTURE.md draws the layers and lists every
module, and the import-linter contracts in pyproject.toml keep them apart.
"""
