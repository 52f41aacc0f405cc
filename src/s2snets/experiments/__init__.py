"""Orchestration: the paper's pipeline (replicate), the open question (hypothesis), the demo presets."""
