"""Data layer: the contract, the THINGS loaders and the built-in simulated dataset."""

from .contract import DataFormatError, EpochedDataset, Split

__all__ = ["DataFormatError", "EpochedDataset", "Split"]
