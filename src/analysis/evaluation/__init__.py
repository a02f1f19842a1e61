"""Evaluation: fidelity against the noise ceiling, topographies, decoding-based checks.

Every function takes plain arrays (documented shapes and units), so it judges a diffusion
model, a baseline or real data alike.
"""
