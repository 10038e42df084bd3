"""mpo-repro: Multi-token Policy Gradient Optimization (MPO) and its baselines, end to end."""

__version__ = "0.1.0"
