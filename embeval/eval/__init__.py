"""Evaluation layer: task → encoder → embeddings → metrics → results JSON → report."""
