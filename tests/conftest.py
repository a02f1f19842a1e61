"""Suite-wide settings: the tests never reach outside this machine."""

import os

# huggingface_hub reads this once at import: set it before anything imports open_clip, so a
# pretrained tag fails at once instead of retrying an unreachable host.
os.environ["HF_HUB_OFFLINE"] = "1"
