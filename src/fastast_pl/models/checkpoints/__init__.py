"""The one owner of every checkpoint read: files, formats, fitting, the teacher checkpoint.

- ``files``: reading a file (.ckpt/.pth/.bin/safetensors/HF directory) with named errors.
- ``formats``: renaming each supported layout's keys to ``ASTModel``'s.
- ``reading``: ``read_checkpoint`` detects the format and infers the architecture.
- ``fitting``: fitting a checkpoint to a model (pos-embed, head), ``from_pretrained``'s arguments.
- ``teacher``: the TeacherModule checkpoint and what it says about its data.
- ``hub``: Hugging Face hub model ids, through huggingface_hub's cache and offline mode.
- ``metadata``: what inference needs (class names, features, label kind, merge schedule).
"""

from fastast_pl.models.checkpoints.files import (
    SUPPORTED_FORMATS,
    load_torch,
    read_lightning,
)
from fastast_pl.models.checkpoints.fitting import (
    fit_state_dict,
    load_fitted,
    pretrained_arguments,
    resize_pos_embed,
)
from fastast_pl.models.checkpoints.hub import looks_like_hub_id, resolve_source
from fastast_pl.models.checkpoints.metadata import (
    INFERENCE_CKPT_KEY,
    InferenceInfo,
    inference_metadata,
    read_inference_info,
)
from fastast_pl.models.checkpoints.reading import Checkpoint, read_checkpoint
from fastast_pl.models.checkpoints.teacher import (
    TEACHER_CKPT_KEY,
    load_teacher,
    read_teacher_checkpoint,
)

__all__ = [
    "INFERENCE_CKPT_KEY",
    "InferenceInfo",
    "inference_metadata",
    "looks_like_hub_id",
    "read_inference_info",
    "resolve_source",
    "SUPPORTED_FORMATS",
    "TEACHER_CKPT_KEY",
    "Checkpoint",
    "fit_state_dict",
    "load_fitted",
    "load_teacher",
    "load_torch",
    "pretrained_arguments",
    "read_checkpoint",
    "read_lightning",
    "read_teacher_checkpoint",
    "resize_pos_embed",
]
