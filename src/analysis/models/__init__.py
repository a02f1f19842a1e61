"""Generators and baselines: the 1-D U-Net denoiser, its conditioning, the diffusion
process (separate from the network), and the linear / mean baselines."""
