"""Fitting a ``Checkpoint`` to an ``ASTModel``, and the model arguments a checkpoint implies.

The positional embedding of the patches is cut at the centre (axis smaller) or bilinearly
interpolated (axis larger), per axis, as AST does for its grid; the head is re-initialised
when the class count differs. Everything else must match, or the error names the key and
both shapes. Each adaptation is logged.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from fastast_pl.models.arch import ASTArch
from fastast_pl.models.checkpoints.formats import PREFIX_TOKENS, blocks_depth
from fastast_pl.models.checkpoints.reading import Checkpoint, read_checkpoint

log = logging.getLogger(__name__)

#: ``ASTModel`` arguments besides ``arch`` that ``from_pretrained`` overrides may name.
MODEL_ARGUMENTS = ("num_classes", "input_tdim", "input_fdim", "merge", "eval_merge", "prop_attn")
_ARCH_FIELDS = tuple(f.name for f in dataclasses.fields(ASTArch))


def pretrained_arguments(
    path: str | os.PathLike,
    overrides: Mapping[str, object],
    checkpoint_fdim: int | None = None,
    checkpoint_fstride: int | None = None,
) -> tuple[Checkpoint, dict[str, object]]:
    """The checkpoint at ``path`` and the ``ASTModel`` arguments it implies, ``overrides`` on top.

    ``overrides`` may name ``ASTModel`` arguments (``arch`` an ``ASTArch``, replacing the
    checkpoint's whole architecture) or single ``ASTArch`` fields, not both ``arch`` and fields.
    """
    unknown = sorted(set(overrides) - {"arch", *MODEL_ARGUMENTS, *_ARCH_FIELDS})
    if unknown:
        raise TypeError(
            f"from_pretrained: unknown override(s) {unknown}; expected ASTModel arguments "
            f"{['arch', *MODEL_ARGUMENTS]} or ASTArch fields {list(_ARCH_FIELDS)}"
        )
    whole = overrides.get("arch")
    fields = {k: v for k, v in overrides.items() if k in _ARCH_FIELDS}
    if whole is not None:
        if not isinstance(whole, ASTArch):
            raise TypeError(f"from_pretrained: arch must be an ASTArch, got {whole!r}")
        if fields:
            raise TypeError(
                f"from_pretrained: give either arch=ASTArch(...) or ASTArch fields "
                f"{sorted(fields)}, not both"
            )
        fields = dataclasses.asdict(whole.resolved())
    ckpt = read_checkpoint(
        path,
        fdim=checkpoint_fdim,
        fstride=checkpoint_fstride,
        num_heads=fields.get("num_heads"),  # type: ignore[arg-type]
        model_fdim=overrides.get("input_fdim"),  # type: ignore[arg-type]
        model_fstride=fields.get("fstride"),  # type: ignore[arg-type]
    )
    config = {**ckpt.config, **fields}
    arguments = {k: config[k] for k in MODEL_ARGUMENTS if k in config}
    arguments.update({k: v for k, v in overrides.items() if k in MODEL_ARGUMENTS})
    arguments["arch"] = ASTArch(**{k: config[k] for k in _ARCH_FIELDS if k in config})
    return ckpt, arguments


def load_fitted(model: nn.Module, ckpt: Checkpoint, strict: bool = True) -> None:
    """Fit ``ckpt`` to ``model`` (see ``fit_state_dict``) and load it."""
    model.load_state_dict(fit_state_dict(ckpt, model, strict=strict), strict=strict)
    log.info("%s: loaded %s checkpoint into %s", ckpt.path, ckpt.format, _describe(model))


def _fit_axis(x: torch.Tensor, dim: int, new: int, axis: str) -> tuple[torch.Tensor, str | None]:
    """Centre-crop or bilinearly interpolate the (1, D, F, T) grid ``x`` along ``dim``."""
    old = x.shape[dim]
    if new == old:
        return x, None
    if new < old:
        start = old // 2 - new // 2  # AST's centre: int(old / 2) - int(new / 2)
        return x.narrow(dim, start, new), f"centre crop in {axis}"
    size = (new, x.shape[3]) if dim == 2 else (x.shape[2], new)
    out = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False)
    return out.to(x.dtype), f"bilinear interpolation in {axis}"


def resize_pos_embed(
    pos_embed: torch.Tensor, src_grid: tuple[int, int], dst_grid: tuple[int, int]
) -> tuple[torch.Tensor, str]:
    """Fit ``pos_embed`` (1, 2 + F*T, D) from grid ``src_grid`` to ``dst_grid``, per axis.

    Time first, then frequency (the order AST uses); prefix-token embeddings are kept.
    Returns the new embedding and a description such as ``"12x101 -> 12x50 (centre crop in time)"``.
    """
    (f0, t0), (f1, t1) = src_grid, dst_grid
    dim = pos_embed.shape[-1]
    prefix = pos_embed[:, :PREFIX_TOKENS]  # (1, 2, D)
    grid = pos_embed[:, PREFIX_TOKENS:].reshape(1, f0, t0, dim).permute(0, 3, 1, 2)  # (1, D, F, T)
    grid, t_note = _fit_axis(grid, 3, t1, "time")
    grid, f_note = _fit_axis(grid, 2, f1, "frequency")
    patches = grid.permute(0, 2, 3, 1).reshape(1, f1 * t1, dim)  # (1, F' * T', D)
    notes = ", ".join(n for n in (t_note, f_note) if n)
    return torch.cat((prefix, patches), dim=1), f"{f0}x{t0} -> {f1}x{t1} ({notes})"


def fit_state_dict(
    ckpt: Checkpoint, model: nn.Module, strict: bool = True
) -> dict[str, torch.Tensor]:
    """The checkpoint's state dict made loadable into ``model``; raises ValueError otherwise.

    Everything is checked before anything changes: only then is the positional embedding
    fitted to the model's grid and, for a different class count, the head re-initialised.
    """
    sd = dict(ckpt.state_dict)
    new_head = ckpt.num_classes != model.num_classes
    _check_compatible(ckpt, sd, model, new_head, strict)
    for name in ("num_heads", "norm_eps", "fstride", "tstride"):
        if name in ckpt.known and ckpt.config.get(name) != getattr(model.arch, name):
            log.warning(
                "%s: checkpoint has %s=%s, model %s=%s",
                ckpt.path,
                name,
                ckpt.config.get(name),
                name,
                getattr(model.arch, name),
            )
    if "pos_embed" in sd and ckpt.grid != model.grid_size:
        sd["pos_embed"], what = resize_pos_embed(sd["pos_embed"], ckpt.grid, model.grid_size)
        log.info("%s: pos_embed %s", ckpt.path, what)
    if new_head:
        model.reset_head()
        sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
        sd.update({f"head.{k}": v.detach().clone() for k, v in model.head.state_dict().items()})
        if ckpt.num_classes is None:
            log.info(
                "%s: no audio head in the checkpoint; head for %d classes initialised",
                ckpt.path,
                model.num_classes,
            )
        else:
            log.info(
                "%s: head %d -> %d classes: re-initialised",
                ckpt.path,
                ckpt.num_classes,
                model.num_classes,
            )
    return sd


def _check_compatible(
    ckpt: Checkpoint, sd: dict[str, torch.Tensor], model: nn.Module, new_head: bool, strict: bool
) -> None:
    """Raise ValueError naming the key and both shapes for anything that cannot be adapted."""
    expected = model.state_dict()
    depth = blocks_depth(sd)
    if depth != model.depth and strict:
        raise ValueError(
            f"{ckpt.path}: checkpoint has {depth} transformer blocks (keys blocks.0-{depth - 1}.*), "
            f"the model expects {model.depth}"
        )
    for key, value in sd.items():
        if key not in expected or (new_head and key.startswith("head.")):
            continue
        want = expected[key].shape
        # pos_embed only has to agree in width: its grid is fitted afterwards.
        ok = value.shape[-1] == want[-1] if key == "pos_embed" else value.shape == want
        if not ok:
            raise ValueError(
                f"{ckpt.path}: key {key!r} has shape {tuple(value.shape)} in the checkpoint "
                f"({ckpt.format}) but the model expects {tuple(want)} "
                f"(model embed_dim={model.embed_dim}, checkpoint embed_dim="
                f"{ckpt.config.get('embed_dim')})"
            )
    if strict:
        unexpected = [
            k for k in sd if k not in expected and not (new_head and k.startswith("head."))
        ]
        missing = [k for k in expected if k not in sd and not (new_head and k.startswith("head."))]
        if unexpected or missing:
            raise ValueError(
                f"{ckpt.path} ({ckpt.format}): keys do not match the model; unexpected "
                f"{unexpected[:10]}, missing {missing[:10]}"
            )


def _describe(model: nn.Module) -> str:
    f, t = model.grid_size
    return (
        f"ASTModel(embed_dim={model.embed_dim}, depth={model.depth}, heads={model.num_heads}, "
        f"grid={f}x{t}, classes={model.num_classes})"
    )
