"""sweep: Hydra-configured Optuna sweeps of Keras models, tracked in MLflow."""

__version__ = "0.1.0"
