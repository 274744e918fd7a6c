"""tunery: fine-tune, serve, evaluate and optimize chat language models on your own machine."""

import os

# transformers 5 swaps layers for kernels that its `kernels` dependency downloads from the Hugging
# Face Hub on first use (on a GPU, the rotary embedding among them): code fetched at run time, and
# on a machine that reaches no hub, every training failed ("... is not available in the local
# cache"). tunery runs what is installed; USE_HUB_KERNELS=YES in the environment turns them back on.
os.environ.setdefault("USE_HUB_KERNELS", "NO")

from tunery.chat import ChatMessage, Conversation, Role  # noqa: E402

__version__ = "0.1.0"

__all__ = ["ChatMessage", "Conversation", "Role", "__version__"]
