"""sweep: Hydra-configured Optuna sweeps of Keras models, tracked in MLflow."""

from pathlib import Path

__version__ = "0.1.0"
# The Hydra config the commands and the API compose (the repository's conf/).
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
