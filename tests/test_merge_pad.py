"""Short clips with their padding-only patches merged first (``merge-pad``): exact where it
claims to be (no padding column; padding tokens equal within a row, resting on a key of size
s weighing as s literal copies), its token count and sizes against a count of patch columns
written out here, its FLOPs against torch's FlopCounterMode, a merge schedule's share of the
tokens present, and refusals of settings it cannot honour. Through ``AudioClassifier``:
tests/test_short_clips_classify.py."""

import math

import pytest
import torch
from torch.utils import flop_counter

from fastast_pl.models.arch import ASTArch
from fastast_pl.models.ast import ASTModel
from fastast_pl.short_clips import clip_tokens, prepare, window_flops
from fastast_pl.tome import apply_tome, group_merge, merge_wavg, tome_state, vit_flops
from fastast_pl.tome.attention import proportional_attention
from fastast_pl.tome.flops import matching_flops

# patch 16, stride 8: 96 frames -> 11 time columns starting at frames 0, 8, ..., 80;
# 32 mel bins -> 3 frequency rows; 2 + 3 * 11 = 35 tokens
ARCH = ASTArch(embed_dim=32, depth=3, num_heads=2, fstride=8, tstride=8)


def _model(merge=0, prop_attn=True) -> ASTModel:
    torch.manual_seed(0)
    model = ASTModel(5, input_tdim=96, input_fdim=32, arch=ARCH, merge=merge, prop_attn=prop_attn)
    return model.eval()


def _padded(frames: int, batch: int = 2) -> torch.Tensor:
    """A window whose frames from ``frames`` on hold one constant, as normalised zero padding."""
    x = torch.randn(batch, 96, 32)
    x[:, frames:] = 0.7
    return x


def test_group_merge_is_a_size_weighted_mean_with_sizes():
    x = torch.arange(12.0).reshape(1, 4, 3)  # (B, N, D)
    size = torch.tensor([[[1.0], [2.0], [1.0], [3.0]]])
    merged, new_size = merge_wavg(group_merge(torch.tensor([0, 1, 1, 1]), 2), x, size)
    expected = (x[0, 1] * 2 + x[0, 2] * 1 + x[0, 3] * 3) / 6  # written out
    torch.testing.assert_close(merged[0, 1], expected)
    torch.testing.assert_close(merged[0, 0], x[0, 0])
    assert new_size.flatten().tolist() == [1.0, 6.0]
    with pytest.raises(ValueError, match="every output"):
        group_merge(torch.tensor([0, 2]), 3)


@pytest.mark.parametrize("merge", [0, 3])
def test_a_clip_of_the_full_window_is_the_padding_result_bit_for_bit(merge):
    model = _model(merge)
    x = torch.randn(2, 96, 32)
    with torch.no_grad():
        padding = model(x)
        prepare(model, "merge-pad")
        for frames in (81, 96, 500):  # column 10 starts at frame 80: no padding column
            torch.testing.assert_close(model(x, clip_frames=frames), padding, rtol=0, atol=0)
    assert tome_state(model).tokens_seen[0] == model.num_tokens == 35


@pytest.mark.parametrize(
    "frames, columns",  # columns start at 0, 8, 16, ...: those starting before `frames`
    [(1, 1), (8, 1), (9, 2), (20, 3), (24, 3), (25, 4), (80, 10)],
)
def test_tokens_and_sizes_follow_the_columns_the_clip_covers(frames, columns):
    model = _model()
    prepare(model, "merge-pad")
    with torch.no_grad():
        model(_padded(frames), clip_frames=frames)
    state = tome_state(model)
    pad = 11 - columns  # padding-only columns, merged into one token per row
    row = [1.0] * columns + [float(pad)]
    assert model.clip_columns(frames) == columns
    assert state.tokens_seen == [2 + 3 * (columns + 1)] * 4  # r=0: all blocks, and the output
    assert clip_tokens(model, frames, "merge-pad") == state.tokens_seen[0]
    assert state.size.shape == (2, 2 + 3 * (columns + 1), 1)
    assert state.size[0].flatten().tolist() == [1.0, 1.0] + row * 3
    assert clip_tokens(model, frames, "pad") == 35


def test_exact_when_the_padding_tokens_of_a_row_are_equal():
    """Equal position embeddings over a row's padding columns make its padding tokens equal:
    one token of size s under proportional attention is then exactly s copies."""
    model = _model()
    frames, columns = 20, 3
    with torch.no_grad():
        grid = model.pos_embed[:, 2:].view(1, 3, 11, 32)  # (1, F', T'', D), frequency-major
        grid[:, :, columns:] = grid[:, :, columns : columns + 1].clone()
        x = _padded(frames)
        padding = model(x)
        prepare(model, "merge-pad")
        torch.testing.assert_close(model(x, clip_frames=frames), padding, rtol=1e-5, atol=1e-5)
        model.pos_embed.normal_(std=0.02)  # distinct position embeddings: approximate
        assert not torch.allclose(model(x, clip_frames=frames), model(x), atol=1e-5)


def test_flops_are_those_of_the_tokens_the_blocks_saw():
    model = _model(merge=3)
    prepare(model, "merge-pad")
    frames = 40  # 5 columns: 2 + 3 * 6 = 20 tokens
    with torch.no_grad():
        model(_padded(frames), clip_frames=frames)
    seen = tome_state(model).tokens_seen
    assert seen[0] == clip_tokens(model, frames, "merge-pad") == 20
    assert seen[-1] < seen[0]  # the schedule merges the same share of the fewer tokens
    assert window_flops(model, 20) == vit_flops(seen, 32, 4.0)


def test_settings_it_cannot_honour_are_errors():
    model = _model()
    with pytest.raises(ValueError, match="apply_tome"):  # no ToMe blocks: not prepared
        model(_padded(20), clip_frames=20)
    prepare(model, "merge-pad")
    with pytest.raises(ValueError, match="one"):
        model(torch.randn(1, 40, 32), crop_time=True, clip_frames=20)
    with pytest.raises(ValueError, match="clip_frames=0"):
        model(_padded(20), clip_frames=0)
    with pytest.raises(ValueError, match="prop_attn=False"):
        prepare(_model(merge=3, prop_attn=False), "merge-pad")
    with pytest.raises(ValueError, match="short_clips must be one of"):
        prepare(_model(), "merge")


def test_traced_sources_start_from_the_merged_padding():
    """With source tracing, each token's source row names the input patches it holds: the
    padding token of a row holds that row's padding columns, and later merges add up."""
    model = _model(merge=3)
    prepare(model, "merge-pad")
    apply_tome(model, r=model.eval_merge, prop_attn=True, trace_source=True)
    with torch.no_grad():
        model(_padded(20), clip_frames=20)  # 3 clip columns, 8 padding columns per row
    state = tome_state(model)
    assert state.source.shape == (2, state.tokens_seen[-1], 35)
    torch.testing.assert_close(state.source.sum(-1, keepdim=True), state.size)
    assert state.source.sum().item() == 2 * 35  # every input token in exactly one token
    assert state.tokens_seen[0] == 2 + 3 * (3 + 1) > state.tokens_seen[-1]  # then merged on


@pytest.mark.parametrize("s", [1, 3, 8])
def test_a_key_of_size_s_weighs_as_s_identical_keys(s):
    """The identity merge-pad's exactness rests on, written out with plain softmax: attention
    over keys where key j is repeated s times equals proportional attention (``log s`` added
    to key j's logits) over the keys with j once."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 8, dtype=torch.float64) for _ in range(3))  # (B, H, N, Dh)
    j = 3
    copies = [0, 1, 2, *[j] * s, 4]  # the keys a padded sequence literally holds
    logits = q @ k[:, :, copies].transpose(-1, -2) / 8**0.5  # (B, H, N, N + s - 1)
    expected = logits.softmax(-1) @ v[:, :, copies]  # (B, H, N, Dh)
    size = torch.ones(2, 5, 1, dtype=torch.float64)
    size[:, j] = s
    torch.testing.assert_close(proportional_attention(q, k, v, size), expected)
    if s > 1:  # the same keys without the sizes weigh j once
        assert not torch.allclose(proportional_attention(q, k, v, None), expected)


def _counted_block_flops(model: ASTModel, x: torch.Tensor, clip_frames: int) -> int:
    """FLOPs torch's FlopCounterMode counts in ``model.blocks`` for one example."""

    def cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
        # CPU SDPA runs as flash_attention_for_cpu, which the counter does not list: count
        # it with torch's own SDPA formula
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa_flops}
    counter = flop_counter.FlopCounterMode(display=False, custom_mapping=mapping)
    with counter, torch.no_grad():
        model(x, clip_frames=clip_frames)
    counts = counter.get_flop_counts()
    total = sum(sum(counts[f"ASTModel.blocks.{i}"].values()) for i in range(model.depth))
    return total // x.shape[0]


@pytest.mark.parametrize("merge", [0, 3])
def test_flops_match_torch_counter(merge):
    model = _model(merge)
    prepare(model, "merge-pad")
    frames = 40
    counted = _counted_block_flops(model, _padded(frames), frames)
    seen = tome_state(model).tokens_seen
    # window_flops leaves out the matching of a merge schedule (tome.flops.vit_flops)
    matching = sum(matching_flops(a, 32 // 2) for a, b in zip(seen, seen[1:]) if b < a)
    assert counted == window_flops(model, clip_tokens(model, frames, "merge-pad")) + matching
    assert (matching > 0) == bool(merge)


def test_a_merge_schedule_merges_its_share_of_the_tokens_present_and_carries_sizes():
    """After the padding merge the schedule runs on the fewer tokens: layer l merges
    floor(share_l * (N_l - 2)) of them, share_l = r_l / (tokens at the full window - 2); the
    sizes still count every patch of the window."""
    model = _model(merge=3)  # full window: 35, 32, 29, 26 tokens
    prepare(model, "merge-pad")
    frames = 40  # 5 clip columns: 2 + 3 * 6 = 20 tokens
    with torch.no_grad():
        model(_padded(frames), clip_frames=frames)
    state = tome_state(model)
    shares = [3 / 33, 3 / 30, 3 / 27]
    tokens = [20]
    for share in shares:
        tokens.append(tokens[-1] - math.floor(share * (tokens[-1] - 2) + 1e-9))
    assert state.tokens_seen == tokens == [20, 19, 18, 17]
    assert state.size.sum(dim=(1, 2)).tolist() == [35.0, 35.0]  # 2 prefix + 33 patches
    assert state.size[:, :2].flatten().tolist() == [1.0] * 4  # prefix tokens never merge
