"""Measures: pure functions of tensors, batched, with shapes and units in their docstrings. No I/O."""
