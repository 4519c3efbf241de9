"""Experiment configs: each file has `get_config()` and opens with its command and result."""
