"""An alias kept for code written before the rename: the reference models (mlp, simple_cnn,
deep_cnn, MODELS, get) live in fastnn.reference_models."""
from fastnn.reference_models import MODELS, deep_cnn, get, mlp, simple_cnn

__all__ = ["MODELS", "deep_cnn", "get", "mlp", "simple_cnn"]
