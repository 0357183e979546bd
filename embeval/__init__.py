"""embeval: train and evaluate sentence embeddings the way the papers do."""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
