"""Optimisation: rules, the model-shaped state tree, adjust/freeze."""
