"""Fixtures shared by several test files (one instance per session, whichever files use them)."""

pytest_plugins = ["slurm_cluster"]  # the `slurm` fixture: a real one-node SLURM
