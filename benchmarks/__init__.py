"""Benchmarks of repairml: pipeline speed (pipeline_speed.py) and model quality (quality.py)."""
