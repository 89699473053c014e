"""dsforge: build, check and register training data for LLaMA-Factory."""

__version__ = "0.1.0"
