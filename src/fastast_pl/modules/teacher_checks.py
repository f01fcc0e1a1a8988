"""Checks of a distillation teacher against the data before a run: classes, label kind,
feature settings and data source (every stage), and what a waveform teacher needs of the
batches (fit); ``DistillationModule.setup`` runs them."""

from __future__ import annotations

import logging
from typing import Any

from fastast_pl.models.teacher import TeacherInfo

log = logging.getLogger(__name__)

#: Feature settings that may differ between teacher and student data: training-time
#: dither is augmentation, not part of what the teacher expects at its input.
_IGNORED_FEATURE_KEYS = frozenset({"dither"})


def check_teacher_compatibility(
    info: TeacherInfo,
    num_classes: int,
    multi_label: bool,
    feature_config: dict[str, Any] | None,
    class_names: list[str] | None = None,
    data_source: str | None = None,
    other_data: bool = False,
) -> None:
    """Raise ValueError naming the teacher's and the data's value of every setting that differs.

    Compared: the number of classes, the class names (where both say; with ``other_data``
    names other than the data's are warned about, the data's in another order still refused;
    a teacher that names
    none is warned about, as one that does not say its label kind is), the label kind, the
    feature settings (every key of ``feature_config()`` both sides have, except training
    dither; without a stored feature config, the mel bins) and, unless ``other_data``, the
    data source the teacher was trained on (its ``data_identity()["source"]``: the source,
    its root and split settings; a teacher trained on other splits may have seen the
    student's validation and test clips).
    """
    problems = []
    if info.num_classes != num_classes:
        problems.append(f"num_classes: teacher {info.num_classes}, data {num_classes}")
    elif info.class_names is not None and class_names is not None:
        pairs = zip(info.class_names, class_names)
        at = next((i for i, (a, b) in enumerate(pairs) if str(a) != str(b)), None)
        if at is not None:
            what = f"class {at}: teacher {info.class_names[at]!r}, data {class_names[at]!r}"
            reordered = sorted(map(str, info.class_names)) == sorted(map(str, class_names))
            if other_data and not reordered:  # another corpus may spell the same classes otherwise
                log.warning("teacher checkpoint %r names other classes (%s): with "
                            "teacher_other_data they are taken as the data's, by index",
                            info.path, what)  # fmt: skip
            else:
                problems.append(what + ("" if reordered else " (the same classes spelled "
                                        "otherwise: set model.init_args.teacher_other_data=true)"))  # fmt: skip
    elif info.class_names is None and class_names:
        log.warning(  # a PaSST weights file, an official AST release: a head without names
            "teacher checkpoint %r names no classes: its class k is taken as the data's class "
            "k (%s); the order is not checked",
            info.path,
            ", ".join(f"{k}: {name!r}" for k, name in enumerate(class_names[:3]))
            + (", ..." if len(class_names) > 3 else ""),
        )
    teacher_source = (info.data or {}).get("source")
    if not other_data and teacher_source is not None and data_source is not None:
        if teacher_source != data_source:
            problems.append(
                f"data source: teacher trained on {teacher_source}, data {data_source} (if "
                "meant, set model.init_args.teacher_other_data=true)"
            )
    if info.multi_label is None:
        log.warning(
            "teacher checkpoint %r does not say whether it is multi-label; not checked", info.path
        )
    elif info.multi_label != multi_label:
        problems.append(f"multi_label: teacher {info.multi_label}, data {multi_label}")
    teacher_features = info.feature_config
    if teacher_features is None:
        teacher_features = {"num_mel_bins": info.num_mel_bins}
    if feature_config is not None:
        for key in sorted(set(teacher_features) & set(feature_config) - _IGNORED_FEATURE_KEYS):
            if teacher_features[key] != feature_config[key]:
                problems.append(
                    f"feature {key}: teacher {teacher_features[key]!r}, data {feature_config[key]!r}"
                )
    if problems:
        raise ValueError(
            f"teacher checkpoint {info.path!r} does not fit the data: " + "; ".join(problems)
        )


def check_waveform_data(datamodule: Any, teacher_checkpoint: str | None) -> None:
    """A waveform teacher needs waveforms in the batch; say what it does not hear."""
    carries = getattr(datamodule, "carries_waveforms", None)
    if datamodule is not None and not (callable(carries) and carries()):
        raise ValueError(
            f"teacher {teacher_checkpoint!r} is a waveform teacher (an HF audio "
            f"classifier or PaSST, with its own front-end); {type(datamodule).__name__} "
            "does not put waveforms into its batches: set data.waveforms: true"
        )
    others = (
        [a for a in training_augmentations(datamodule) if not a.startswith("mixup=")]
        if datamodule is not None
        else []
    )
    if others:
        log.warning(
            "waveform teacher: it hears each clip's clean waveform (and the waveform mix "
            "with mixup); %s change only the student's fbank, so the teacher does not see "
            "what the student sees there (CMKD teaches on the same input)",
            ", ".join(others),
        )


def training_augmentations(datamodule: Any) -> list[str]:
    """The datamodule's ``training_augmentations()`` (what changes a training clip's input
    from epoch to epoch); a datamodule without it cannot say, and is listed as unknown."""
    augmentations = getattr(datamodule, "training_augmentations", None)
    if not callable(augmentations):
        return [f"unknown ({type(datamodule).__name__} has no training_augmentations())"]
    return list(augmentations())
