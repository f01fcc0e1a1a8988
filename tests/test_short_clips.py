"""Short clips at their own length (``crop-pos``): exact where it claims to be (clips of at
least one window), and at a shorter length equal to an independently built shorter model
whose position embeddings the test cuts itself; the merge schedule keeps its shares."""

import pytest
import torch

from fastast_pl.models.arch import ASTArch
from fastast_pl.models.ast import ASTModel
from fastast_pl.short_clips import kept_frames, schedule_as_ratios, tokens_entering

ARCH = ASTArch(embed_dim=32, depth=3, num_heads=2, fstride=8, tstride=8)


def _model(tdim: int = 96, merge=0) -> ASTModel:
    torch.manual_seed(0)
    return ASTModel(num_classes=5, input_tdim=tdim, input_fdim=32, arch=ARCH, merge=merge).eval()


def _cut_reference(model: ASTModel, frames: int, merge) -> ASTModel:
    """A model built for ``frames`` frames holding ``model``'s weights, its position embedding
    the first time columns of ``model``'s (1, 2 + F*T, D) grid, cut here by index."""
    short = _model(frames, merge)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    f_dim, t_dim = model.grid_size
    columns = short.grid_size[1]
    keep = [2 + f * t_dim + t for f in range(f_dim) for t in range(columns)]  # frequency-major
    state["pos_embed"] = state["pos_embed"][:, [0, 1, *keep]]
    short.load_state_dict(state)
    return short.eval()


def test_full_length_is_forward():
    model = _model(merge=4)
    x = torch.randn(2, 96, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x, crop_time=True), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("merge", [0, 3])
def test_cropped_equals_a_shorter_model_with_cut_embeddings(merge):
    model = _model(merge=merge)
    spec = schedule_as_ratios(model)
    assert model.merge_schedule(spec).r == model.merge_schedule().r  # same r at full length
    model.set_merge(spec)
    frames = 40  # 4 of the 11 time columns
    x = torch.randn(2, frames, 32)
    reference = _cut_reference(model, frames, spec)
    with torch.no_grad():
        torch.testing.assert_close(model(x, crop_time=True), reference(x), rtol=1e-5, atol=1e-5)
    assert (reference.merge_schedule().r != [0, 0, 0]) == bool(merge)  # shares of fewer tokens
    with pytest.raises(ValueError, match="frames"):
        model(torch.randn(1, 97, 32), crop_time=True)


def test_kept_frames_cover_the_clip_with_whole_columns():
    model = _model()  # patch 16, stride 8, 96 frames
    assert [kept_frames(model, n) for n in (1, 16, 17, 24, 25, 95, 96, 200)] == [
        16,
        16,
        24,
        24,
        32,
        96,
        96,
        96,
    ]
    assert tokens_entering(model, 96) == model.num_tokens
    assert tokens_entering(model, 24) == 2 + model.grid_size[0] * 2
