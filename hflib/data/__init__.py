"""Data for the experiments (layer 4): MNIST (`mnist`), the synthetic sets (`synthetic`) and
array helpers (`arrays`); the names below are re-exported here."""
from .arrays import make_dataset, subset
from .mnist import CACHE_DIR_ENV, DATA_DIR_ENV, DEFAULT_CACHE_DIR, IDX_FILES, load_mnist, locate
from .synthetic import make_sine_data, make_teacher_data

__all__ = ["load_mnist", "locate", "make_dataset", "make_sine_data", "make_teacher_data", "subset", "DATA_DIR_ENV",
           "CACHE_DIR_ENV", "DEFAULT_CACHE_DIR", "IDX_FILES"]
