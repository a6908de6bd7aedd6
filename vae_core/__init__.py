"""vae_core: a small PyTorch engine for Variational Auto-Encoders and plain Auto-Encoders.

Importing it has no side effects. The app (app.py, app_pages/) and the command line
(python -m vae_core) are built on it; it never imports Streamlit.
"""
from .config import ModelConfig, TrainConfig
from .errors import CheckpointError, ConfigError, DataError, TrainingDiverged, VaeCoreError
from .models import AE, VAE, MODELS, ForwardOutput, build_model

__all__ = ["ModelConfig", "TrainConfig", "AE", "VAE", "MODELS", "ForwardOutput", "build_model",
           "VaeCoreError", "ConfigError", "DataError", "CheckpointError", "TrainingDiverged"]
