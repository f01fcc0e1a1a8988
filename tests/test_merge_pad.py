"""Short clips with their padding-only patches merged first (``merge-pad``): exact where it
claims to be (no padding column; padding tokens equal within a row), its token count and
sizes against a count of patch columns written out here, its FLOPs against the tokens the
blocks saw, and refusals of settings it cannot honour."""

import numpy as np
import pytest
import soundfile as sf
import torch

from fastast_pl.cli import main
from fastast_pl.inference import AudioClassifier
from fastast_pl.models.arch import ASTArch
from fastast_pl.models.ast import ASTModel
from fastast_pl.short_clips import clip_columns, clip_tokens, prepare, window_flops
from fastast_pl.tome import apply_tome, group_merge, merge_wavg, tome_state, vit_flops

from helpers.hf_tiny import FRAMES, save_tiny_hf_ast

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
    assert clip_columns(model, frames) == columns
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


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "tiny"
    save_tiny_hf_ast(path)
    return path


def test_classifier_merge_pad_is_exact_from_one_window_and_cheaper_below(hf_dir, tmp_path):
    rng = np.random.default_rng(0)
    full = tmp_path / "full.wav"
    short = tmp_path / "short.wav"
    sf.write(full, 0.1 * rng.standard_normal(400 + (FRAMES - 1) * 160), 16000)  # one window
    sf.write(short, 0.1 * rng.standard_normal(400 + (FRAMES // 3 - 1) * 160), 16000)
    pad = AudioClassifier.from_pretrained(hf_dir, merge=2, device="cpu")
    merged = AudioClassifier.from_pretrained(hf_dir, merge=2, device="cpu", short_clips="merge-pad")
    crop = AudioClassifier.from_pretrained(hf_dir, merge=2, device="cpu", short_clips="crop-pos")
    (p_full, p_short), (m_full, m_short), (_, c_short) = (
        c.predict([full, short]) for c in (pad, merged, crop)
    )
    torch.testing.assert_close(m_full.scores, p_full.scores, rtol=0, atol=0)  # exact
    assert (m_full.windows, m_full.tokens, m_full.flops) == (
        p_full.windows,
        p_full.tokens,
        p_full.flops,
    )
    # 64 frames, stride 10: 5 time columns x 2 rows; a 21-frame clip starts columns 0, 1, 2
    assert m_short.tokens == 2 + 2 * (3 + 1) < p_short.tokens == 2 + 2 * 5
    assert c_short.tokens < m_short.tokens  # crop-pos keeps no token for the padding
    assert m_short.flops < p_short.flops
    assert not torch.equal(m_short.scores, p_short.scores)  # approximate below one window
    with pytest.raises(ValueError, match="int8"):
        AudioClassifier(
            pad.model, pad.features, device="cpu", quantize="int8", short_clips="merge-pad"
        )


def test_classify_prints_tokens_and_flops_per_file(hf_dir, tmp_path, capsys):
    clip = tmp_path / "a.wav"
    sf.write(clip, 0.1 * np.random.default_rng(1).standard_normal(4000), 16000)  # 23 frames
    flops = {}
    for option in ("pad", "merge-pad"):
        argv = ["classify", str(hf_dir), str(clip), "--short-clips", option, "--cost"]
        assert main(argv) == 0
        line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("cost"))
        assert line.startswith(f"cost {clip}: 1 window(s), ") and line.endswith(" ms")
        flops[option] = float(line.split(" tokens, ")[1].split(" MFLOPs")[0])
    assert 0 < flops["merge-pad"] < flops["pad"]


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
