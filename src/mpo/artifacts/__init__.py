"""Artifacts: the paper's tables and figures rebuilt from this project's results."""
