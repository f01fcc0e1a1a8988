"""The one owner of every checkpoint read: files, formats, fitting, the teacher checkpoint.

- ``files``: reading a file (.ckpt/.pth/.bin/safetensors/HF directory) with named errors.
- ``formats``: renaming each supported layout's keys to ``ASTModel``'s.
- ``reading``: ``read_checkpoint`` detects the format and infers the architecture.
- ``fitting``: fitting a checkpoint to a model (pos-embed, head), ``from_pretrained``'s arguments.
- ``teacher``: the TeacherModule checkpoint and what it says about its data.
- ``hub``: Hugging Face hub model ids, through huggingface_hub's cache and offline mode.
- ``record``: the one record our checkpoints carry about themselves (classes, features,
  label kind, architecture, merge schedules, data identity, weight checksum), and its reader.
- ``metadata``: what inference needs (class names, features, label kind, merge schedule),
  from the record or an HF model's config files.
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
from fastast_pl.models.checkpoints.metadata import InferenceInfo, read_inference_info
from fastast_pl.models.checkpoints.reading import Checkpoint, read_checkpoint
from fastast_pl.models.checkpoints.record import (
    RECORD_KEY,
    RECORD_VERSION,
    CheckpointRecord,
    make_record,
    read_record,
    record_of,
)
from fastast_pl.models.checkpoints.teacher import load_teacher, read_teacher_checkpoint

__all__ = [
    "CheckpointRecord",
    "InferenceInfo",
    "make_record",
    "RECORD_KEY",
    "RECORD_VERSION",
    "read_record",
    "record_of",
    "looks_like_hub_id",
    "read_inference_info",
    "resolve_source",
    "SUPPORTED_FORMATS",
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
