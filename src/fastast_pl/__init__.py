"""fastast-pl: a fast Audio Spectrogram Transformer with Token Merging and CNN distillation."""

from fastast_pl._compat import check_torch_family

check_torch_family()

__version__ = "0.1.0"
