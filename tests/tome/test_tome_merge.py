"""Vectorised bipartite soft matching vs a loop-over-tokens reference written here."""

from __future__ import annotations

import pytest
import torch

from fastast_pl.tome import bipartite_soft_matching, merge_source, merge_wavg


@pytest.mark.parametrize(
    "n,r,prefix", [(10, 3, 1), (11, 4, 2), (12, 5, 2), (9, 2, 0), (13, 9, 1), (8, 1, 3)]
)
def test_matches_naive_reference(n, r, prefix, naive_merge):
    g = torch.Generator().manual_seed(n * 31 + r)
    bsz, dim = 3, 6
    x = torch.randn(bsz, n, dim, generator=g)
    metric = torch.randn(bsz, n, 5, generator=g)
    size = torch.randint(1, 4, (bsz, n, 1), generator=g).float()
    merge, info = bipartite_soft_matching(metric, r, num_prefix_tokens=prefix)
    out, out_size = merge_wavg(merge, x, size)
    source = merge_source(merge, x)
    assert info.r == min(r, (n - prefix) // 2)
    for b in range(bsz):
        ref_x, ref_size, members = naive_merge(x[b], size[b, :, 0], metric[b], r, prefix)
        torch.testing.assert_close(out[b].double(), ref_x, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out_size[b, :, 0].double(), ref_size)
        got_members = [torch.nonzero(row).flatten().tolist() for row in source[b]]
        assert got_members == members


@pytest.mark.parametrize("prefix", [1, 2])
def test_sizes_sum_and_prefix_tokens_untouched(prefix):
    torch.manual_seed(0)
    x = torch.randn(2, 21, 8)
    size = None
    cur = x
    for r in (5, 4, 3):
        metric = cur + 0.1 * torch.randn_like(cur)
        merge, _ = bipartite_soft_matching(metric, r, prefix)
        new, size = merge_wavg(merge, cur, size)
        # Class token (and distillation token) keep their position and their exact value.
        for p in range(prefix):
            assert torch.equal(new[:, p], x[:, p])
        assert torch.all(size[:, :prefix] == 1)
        cur = new
    assert torch.all(size.sum(dim=1) == 21)
    assert cur.shape[1] == 21 - 12


def test_class_token_never_source_even_if_most_similar():
    # Make the class token a copy of a B token: it must still not merge.
    x = torch.randn(1, 8, 4)
    x[0, 0] = x[0, 3]
    x[0, 1] = x[0, 5]  # dist token equal to a B token: never a destination
    x[0, 4] = x[0, 1] * 3  # A token most similar (cosine) to the dist token
    merge, info = bipartite_soft_matching(x, 3, num_prefix_tokens=2)
    out, size = merge_wavg(merge, x)
    assert torch.equal(out[0, 0], x[0, 0]) and torch.equal(out[0, 1], x[0, 1])
    assert 0 not in info.src_idx.flatten().tolist()  # A index 0 = class token
    assert 0 not in info.dst_idx.flatten().tolist()  # B index 0 = distillation token
    assert size[0, :2].flatten().tolist() == [1.0, 1.0]


def test_identical_tokens_lose_nothing():
    # Pairs of identical tokens at (even, odd) positions: merging them keeps every value.
    base = torch.randn(2, 6, 5)
    cls = torch.randn(2, 1, 5)
    x = torch.cat([cls, cls * 2, base.repeat_interleave(2, dim=1)], dim=1)  # (2, 14, 5)
    merge, info = bipartite_soft_matching(x, 6, num_prefix_tokens=2)
    out, size = merge_wavg(merge, x)
    assert info.r == 6
    torch.testing.assert_close(out[:, 2:], base)  # B tokens in order, unchanged values
    assert torch.all(size[:, 2:] == 2)


def test_r_zero_and_cap():
    x = torch.randn(2, 7, 3)
    merge, info = bipartite_soft_matching(x, 0, 1)
    assert info.r == 0 and merge(x) is x
    merge, info = bipartite_soft_matching(x, 100, 1)
    assert info.r == 3 and merge(x).shape == (2, 4, 3)


def test_source_rows_sum_to_size():
    torch.manual_seed(1)
    x = torch.randn(2, 17, 4)
    source, size, cur = None, None, x
    for r in (4, 3, 3):
        merge, _ = bipartite_soft_matching(cur, r, 2)
        source = merge_source(merge, cur, source)
        cur, size = merge_wavg(merge, cur, size)
    torch.testing.assert_close(source.sum(-1, keepdim=True), size)
    assert torch.all((source == 0) | (source == 1))
    assert torch.all(source.sum(dim=1) == 1)  # every input token lives in exactly one token


def test_bf16_runs_and_keeps_dtype():
    x = torch.randn(2, 15, 8).bfloat16()
    merge, _ = bipartite_soft_matching(x, 5, 1)
    out, size = merge_wavg(merge, x)
    assert out.dtype == torch.bfloat16 and out.shape == (2, 10, 8)
    assert size.dtype == torch.float32 and torch.all(size.sum(1) == 15)
