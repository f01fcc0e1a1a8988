"""ASTModel: the Audio Spectrogram Transformer (Gong et al., Interspeech 2021) on timm blocks.

A normalized fbank ``(B, T, F)`` is read as a 1-channel image with frequency as height and
time as width, cut into overlapping 16x16 patches, prefixed with a class and a
distillation token (the DeiT layout AST starts from), run through timm ``Block``s, and the
two prefix outputs are averaged into the classification head. Token Merging is applied
through ``fastast_pl.tome`` (the model only exposes ``.blocks`` and ``.num_prefix_tokens``).
"""

from __future__ import annotations

import functools
import math
import os

import torch
from timm.models.vision_transformer import Block
from torch import nn

from fastast_pl.models.arch import ASTArch, patch_grid
from fastast_pl.models.checkpoints import load_fitted, pretrained_arguments, read_checkpoint
from fastast_pl.tome import (
    MergeSpec,
    ResolvedSchedule,
    apply_tome,
    group_merge,
    merge_before_blocks,
    remove_tome,
    resolve_schedule,
)


class SpectrogramPatchEmbed(nn.Module):
    """Overlapping 1-channel patch embedding of a ``(B, T, F)`` spectrogram into ``(B, N, D)``."""

    def __init__(self, embed_dim: int, patch_size: int, fstride: int, tstride: int) -> None:
        super().__init__()
        self.num_patches: int | None = None  # set by ASTModel; lets apply_tome check r early
        self.proj = nn.Conv2d(
            1, embed_dim, kernel_size=(patch_size, patch_size), stride=(fstride, tstride)
        )

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        x = fbank.unsqueeze(1).transpose(2, 3)  # (B, 1, F, T): frequency is height
        x = self.proj(x)  # (B, D, f_dim, t_dim)
        return x.flatten(2).transpose(1, 2)  # (B, f_dim * t_dim, D), frequency-major


class ASTModel(nn.Module):
    """Audio Spectrogram Transformer over normalized fbank ``(B, T, F)`` -> logits ``(B, C)``.

    ``arch`` gives the size (a named size, overridden by explicit ``embed_dim``/``depth``/
    ``num_heads``), patching and norms; it is kept resolved as ``self.arch``.

    Token Merging follows the module's mode, like dropout: ``merge`` (any
    ``fastast_pl.tome.MergeSpec``) runs in training mode, ``eval_merge`` (default: the same)
    in evaluation mode, so ``.eval()`` anywhere (inference, export, a validation loop)
    selects the evaluation schedule. Both are validated here, so that a bad schedule fails
    when the model is configured, not in the first forward.
    """

    num_prefix_tokens = 2  # class token, distillation token

    def __init__(
        self,
        num_classes: int = 527,
        input_tdim: int = 1024,
        input_fdim: int = 128,
        arch: ASTArch | None = None,
        merge: MergeSpec = 0,
        eval_merge: MergeSpec | None = None,
        prop_attn: bool = True,
    ) -> None:
        super().__init__()
        arch = (arch or ASTArch()).resolved()
        embed_dim, depth, num_heads = arch.embed_dim, arch.depth, arch.num_heads
        assert embed_dim is not None and depth is not None and num_heads is not None
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        if num_classes < 1:
            raise ValueError(f"num_classes={num_classes}: expected at least 1")
        patch_size = arch.patch_size
        for name, length, stride in (
            ("input_fdim", input_fdim, arch.fstride),
            ("input_tdim", input_tdim, arch.tstride),
        ):
            if length < patch_size or stride < 1:
                raise ValueError(
                    f"{name}={length} with stride {stride}: expected a length >= patch_size "
                    f"({patch_size}) and a stride >= 1"
                )
        self.arch = arch
        self.num_classes = num_classes
        self.input_tdim = input_tdim
        self.input_fdim = input_fdim
        self.embed_dim = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.grid_size = (
            patch_grid(input_fdim, patch_size, arch.fstride),
            patch_grid(input_tdim, patch_size, arch.tstride),
        )
        self.num_patches = self.grid_size[0] * self.grid_size[1]

        norm_layer = functools.partial(nn.LayerNorm, eps=arch.norm_eps)
        self.patch_embed = SpectrogramPatchEmbed(embed_dim, patch_size, arch.fstride, arch.tstride)
        self.patch_embed.num_patches = self.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(
            torch.zeros(1, self.num_prefix_tokens + self.num_patches, embed_dim)
        )
        # stochastic depth rising linearly to drop_path_rate (python floats: meta-device safe)
        drop_path = [arch.drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.Sequential(
            *[
                Block(
                    dim=embed_dim,
                    num_heads=num_heads,
                    mlp_ratio=arch.mlp_ratio,
                    qkv_bias=arch.qkv_bias,
                    drop_path=drop_path[i],
                    norm_layer=norm_layer,
                )
                for i in range(depth)
            ]
        )
        self.norm = norm_layer(embed_dim)
        self.head = nn.Sequential(norm_layer(embed_dim), nn.Linear(embed_dim, num_classes))
        self.init_weights()

        self.prop_attn = prop_attn
        self.merge: MergeSpec = 0
        self.eval_merge: MergeSpec = 0
        self.set_merge(merge, eval_merge)

    # ------------------------------------------------------------------ weights
    def init_weights(self) -> None:
        """DeiT-style initialisation: truncated normal (std 0.02) tokens and linear layers."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.dist_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def reset_head(self) -> None:
        """Re-initialise the classification head (LayerNorm + Linear), as AST does on transfer."""
        norm, linear = self.head[0], self.head[1]
        nn.init.ones_(norm.weight)
        nn.init.zeros_(norm.bias)
        nn.init.trunc_normal_(linear.weight, std=0.02)
        nn.init.zeros_(linear.bias)

    # ------------------------------------------------------------------ merging
    @property
    def num_tokens(self) -> int:
        """Tokens entering the first block: prefix tokens plus patches."""
        return self.num_prefix_tokens + self.num_patches

    @property
    def active_merge(self) -> MergeSpec:
        """The schedule the current mode runs: ``merge`` in training, ``eval_merge`` in eval."""
        return self.merge if self.training else self.eval_merge

    def merge_schedule(self, merge: MergeSpec | None = None) -> ResolvedSchedule:
        """The per-layer schedule ``merge`` (default: ``active_merge``) resolves to here."""
        spec = self.active_merge if merge is None else merge
        return resolve_schedule(spec, self.num_tokens, self.depth, self.num_prefix_tokens)

    def set_merge(self, merge: MergeSpec, eval_merge: MergeSpec | None = None) -> None:
        """Validate and set the training schedule ``merge`` and the evaluation schedule
        ``eval_merge`` (None: the same as ``merge``). When neither merges, ToMe is removed
        and the blocks are timm's own again."""
        eval_merge = merge if eval_merge is None else eval_merge
        merging = [any(self.merge_schedule(spec).r) for spec in (merge, eval_merge)]  # raises
        remove_tome(self)  # no-op when not patched
        self.merge, self.eval_merge = merge, eval_merge
        self._merge_mode = self.training  # the mode whose schedule the blocks run
        if any(merging):
            apply_tome(self, r=self.active_merge, prop_attn=self.prop_attn)

    def train(self, mode: bool = True) -> ASTModel:
        """Set the mode (``eval()`` calls this too) and run that mode's merge schedule."""
        super().train(mode)
        self._follow_mode()
        return self

    def _follow_mode(self) -> None:
        """After a mode change, put ``active_merge`` into the patched blocks, keeping the other
        ToMe settings (proportional attention, source tracing, kernel)."""
        if self._merge_mode == self.training:
            return
        self._merge_mode = self.training
        state = getattr(self, "_tome_state", None)
        if state is None or state.spec == self.active_merge:
            return
        apply_tome(
            self,
            r=self.active_merge,
            prop_attn=state.prop_attn,
            trace_source=state.trace_source,
            attn_backend=state.attn_backend,
        )

    # ------------------------------------------------------------------ forward
    def _check_input(self, fbank: torch.Tensor) -> None:
        if fbank.ndim != 3:
            raise ValueError(
                f"ASTModel expects a normalized fbank (B, T, F), got shape {tuple(fbank.shape)}"
            )
        _, t, f = fbank.shape
        grid = (
            patch_grid(f, self.arch.patch_size, self.arch.fstride),
            patch_grid(t, self.arch.patch_size, self.arch.tstride),
        )
        if grid != self.grid_size:
            raise ValueError(
                f"fbank with T={t} frames and F={f} mel bins gives a {grid[0]}x{grid[1]} patch "
                f"grid; this model was built for {self.grid_size[0]}x{self.grid_size[1]} "
                f"(input_tdim={self.input_tdim}, input_fdim={self.input_fdim})"
            )

    def forward_features(
        self, fbank: torch.Tensor, crop_time: bool = False, clip_frames: int | None = None
    ) -> torch.Tensor:
        """Normalized token sequence after the last block, ``(B, N', D)``; ``crop_time`` and
        ``clip_frames``: as in ``forward``."""
        if crop_time and clip_frames is not None:
            raise ValueError("crop_time and clip_frames are two ways to run a short clip: one")
        if crop_time:
            pos_embed = self._time_cut_pos_embed(fbank)
        else:
            self._check_input(fbank)
            pos_embed = self.pos_embed
        # `training` is sometimes set without train() (Lightning restores each submodule's
        # flag after validation, `_ModuleMode.restore`): the schedule follows it here too.
        self._follow_mode()
        x = self.patch_embed(fbank)  # (B, N, D)
        b = x.shape[0]
        prefix = torch.cat(
            (self.cls_token.expand(b, -1, -1), self.dist_token.expand(b, -1, -1)), dim=1
        )  # (B, 2, D)
        x = torch.cat((prefix, x), dim=1) + pos_embed  # (B, 2 + N, D)
        if clip_frames is not None:
            x = self._merge_padding(x, clip_frames)  # (B, 2 + F' * (C + 1), D)
        x = self.blocks(x)  # (B, N', D); N' < 2 + N when merging
        return self.norm(x)

    def forward(
        self, fbank: torch.Tensor, crop_time: bool = False, clip_frames: int | None = None
    ) -> torch.Tensor:
        """Logits ``(B, num_classes)`` from the mean of the class and distillation outputs.

        Two ways to spend less on a clip shorter than the model's input (both
        ``fastast_pl.short_clips``; accuracy against padding in docs/benchmarks.md):

        ``crop_time=True`` takes an input shorter than the model's, ``(B, T', F)`` with
        ``T' <= input_tdim``, at its own length: fewer time columns of patches, whose position
        embeddings are the first columns' (those its frames have when padded at the end, as
        training pads). AST cuts its position embeddings for other input sizes too (Gong et
        al. 2021, Sec. 2.2), there centred. At ``T' = input_tdim`` it changes nothing. A merge
        schedule is resolved for the fewer tokens (``tome``).

        ``clip_frames=n`` takes the padded input ``(B, input_tdim, F)`` whose first ``n``
        frames hold the clip: in each frequency row, the patch columns that start at or
        after frame ``n`` (only padding) enter the first block as one token, their
        size-weighted mean, which proportional attention and later merges count as the
        patches it stands for (``tome.merge_before_blocks``; needs ToMe blocks with
        ``prop_attn``). Exact where padding patches are equal tokens, approximate otherwise:
        see ``_merge_padding``. With no padding column it changes nothing.
        """
        x = self.forward_features(fbank, crop_time, clip_frames)
        pooled = (x[:, 0] + x[:, 1]) / 2  # (B, D)
        return self.head(pooled)

    def _merge_padding(self, x: torch.Tensor, clip_frames: int) -> torch.Tensor:
        """Tokens ``(B, 2 + F' * T'', D)`` -> ``(B, 2 + F' * (C + 1), D)``: per frequency row,
        the ``C`` columns holding clip frames, then one token for the row's padding columns.

        Zero-padded frames normalise to one constant, so every padding-only patch embeds to
        the same vector; its tokens differ only by their position embeddings. Exact: no
        padding column (the input unchanged, bit for bit), and, without a merge schedule,
        padding tokens equal within a row (equal position embeddings): equal tokens stay
        equal through every block, and ``softmax(QK^T + log s)`` weighs one of size ``s`` as
        ``s`` copies. Approximate: trained position embeddings differ along time, so the
        merged token is the mean of distinct tokens (attention sees ``s * exp(q.k_mean)``
        instead of the sum over the columns, and the MLP acts on the mean); a merge
        schedule, resolved for the fewer tokens, merges other tokens than under padding.
        One token per row rather than one in all: the rows' position embeddings differ
        (frequency), and a row's token keeps its own at the cost of ``F' - 1`` tokens.
        """
        if clip_frames < 1:
            raise ValueError(f"clip_frames={clip_frames}: expected at least 1 frame of the clip")
        f_dim, t_dim = self.grid_size
        columns = self.clip_columns(clip_frames)
        if columns == t_dim:
            return x
        p = self.num_prefix_tokens
        slot = torch.arange(t_dim).clamp(max=columns)  # (T'',): padding columns share slot C
        row = torch.arange(f_dim)[:, None] * (columns + 1)  # (F', 1)
        groups = torch.cat((torch.arange(p), (p + row + slot).flatten()))  # (2 + F' * T'',)
        return merge_before_blocks(self, x, group_merge(groups, p + f_dim * (columns + 1)))

    def clip_columns(self, frames: int) -> int:
        """Patch columns of the window that start inside a ``frames``-long clip: those
        ``clip_frames`` keeps (the rest hold only padding)."""
        return min(math.ceil(frames / self.arch.tstride), self.grid_size[1])

    def _time_cut_pos_embed(self, fbank: torch.Tensor) -> torch.Tensor:
        """``pos_embed`` ``(1, 2 + F' * T'', D)`` for a shorter input (see ``forward``)."""
        if fbank.ndim != 3 or fbank.shape[2] != self.input_fdim:
            raise ValueError(
                f"expected a normalized fbank (B, T, {self.input_fdim}), got {tuple(fbank.shape)}"
            )
        frames = fbank.shape[1]
        if not self.arch.patch_size <= frames <= self.input_tdim:
            raise ValueError(
                f"crop_time takes {self.arch.patch_size} to {self.input_tdim} frames, got {frames}"
            )
        f_dim, t_dim = self.grid_size
        columns = patch_grid(frames, self.arch.patch_size, self.arch.tstride)
        prefix = self.pos_embed[:, : self.num_prefix_tokens]  # (1, 2, D)
        grid = self.pos_embed[:, self.num_prefix_tokens :].reshape(1, f_dim, t_dim, -1)
        cut = grid[:, :, :columns].reshape(1, f_dim * columns, -1)  # (1, F' * T'', D)
        return torch.cat((prefix, cut), dim=1)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        checkpoint_fdim: int | None = None,
        checkpoint_fstride: int | None = None,
        **overrides: object,
    ) -> ASTModel:
        """Build a model from a checkpoint (official AST, HF transformers, timm DeiT or ours).

        ``path``: a local file or directory, or a Hugging Face hub model id such as
        ``"MIT/ast-finetuned-audioset-10-10-0.4593"`` (read through huggingface_hub's cache;
        ``HF_HUB_OFFLINE=1`` uses only what is cached). Class names and feature settings are
        not part of the model: ``fastast_pl.AudioClassifier.from_pretrained`` reads them.

        The architecture is read from the checkpoint; ``overrides`` replace it: any
        ``ASTModel`` argument (``num_classes``, ``input_tdim``, ``input_fdim``, ``merge``,
        ``eval_merge``, ``prop_attn``, a whole ``arch=ASTArch(...)``) or single ``ASTArch`` fields
        (``num_heads=4``, ``norm_eps=1e-12``...). A different ``num_classes`` re-initialises
        the head; a different input size adapts the positional embedding (see
        ``fastast_pl.models.checkpoints``). ``checkpoint_fdim``/``checkpoint_fstride``: the mel
        bins and frequency stride the checkpoint was trained with, for files that do not
        store them (official: 128/10).
        """
        ckpt, arguments = pretrained_arguments(path, overrides, checkpoint_fdim, checkpoint_fstride)
        model = cls(**arguments)
        load_fitted(model, ckpt)
        return model

    def load_pretrained(
        self,
        path: str | os.PathLike,
        strict: bool = True,
        *,
        checkpoint_fdim: int | None = None,
        checkpoint_fstride: int | None = None,
    ) -> ASTModel:
        """Load checkpoint weights into this model, adapting pos_embed and head to its sizes."""
        ckpt = read_checkpoint(
            path,
            fdim=checkpoint_fdim,
            fstride=checkpoint_fstride,
            num_heads=self.num_heads,
            model_fdim=self.input_fdim,
            model_fstride=self.arch.fstride,
        )
        load_fitted(self, ckpt, strict=strict)
        return self
