"""image2brain: generate M/EEG signals from images and judge them against recordings."""

__version__ = "0.1.0"
