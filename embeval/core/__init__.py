"""Core layer: model loading and pooling, contrastive losses, the training loop.

Nothing here imports ``embeval.eval``: the evaluation layer builds on this one.
"""
