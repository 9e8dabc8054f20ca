"""Evaluation metrics the tasks share."""

import numpy as np


def classification_metrics(probs, labels) -> dict:
    """Mean cross-entropy (from the predicted probabilities, in float64), accuracy and count."""
    labels = np.asarray(labels)
    picked = np.asarray(probs)[np.arange(len(labels)), labels].astype(np.float64)
    return {
        "loss": float(-np.mean(np.log(np.maximum(picked, 1e-30)))),
        "accuracy": float(np.mean(np.argmax(probs, -1) == labels)),
        "examples": float(len(labels)),
    }
