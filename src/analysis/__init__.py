"""image2brain: generate M/EEG signals from images and judge them against recordings."""

__version__ = "0.1.0"

import warnings as _warnings

# huggingface_hub (imported by open_clip) imports tqdm.auto, which in a Jupyter kernel
# without ipywidgets warns "IProgress not found" on every executed page. Our own bars use
# plain tqdm; widget bars would need JavaScript from a CDN in the offline book anyway.
_warnings.filterwarnings("ignore", message="IProgress not found")
