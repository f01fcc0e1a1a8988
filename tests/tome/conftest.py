"""Shared test reference for the ToMe tests: a loop-over-tokens merge written from the paper."""

from __future__ import annotations

import pytest
import torch


def naive_merge(x, size, metric, r, prefix):
    """One example: returns (tokens, sizes, groups) with the spec's order, using python loops.

    x (N, D), size (N,), metric (N, C). groups[i] lists the input positions in output token i.
    """
    n = x.shape[0]
    m = metric.double()
    m = m / m.norm(dim=-1, keepdim=True)
    a_pos = [i for i in range(n) if i % 2 == 0]
    b_pos = [i for i in range(n) if i % 2 == 1]
    r = min(r, (n - prefix) // 2)
    best = []  # (similarity, a position, partner b position)
    for a in a_pos:
        if a < prefix:
            continue
        sims = [(float(m[a] @ m[b]), b) for b in b_pos if b >= prefix]
        sim, partner = max(sims, key=lambda t: t[0])
        best.append((sim, a, partner))
    chosen = sorted(best, key=lambda t: -t[0])[:r]
    moved = {a for _, a, _ in chosen}
    groups = {b: [b] for b in b_pos}
    for _, a, b in chosen:
        groups[b].append(a)
    order = list(range(prefix))
    order += [a for a in a_pos if a >= prefix and a not in moved]
    order += [b for b in b_pos if b >= prefix]
    tokens, sizes, members = [], [], []
    for pos in order:
        group = groups.get(pos, [pos])
        s = sum(float(size[g]) for g in group)
        tokens.append(sum(x[g].double() * float(size[g]) for g in group) / s)
        sizes.append(s)
        members.append(sorted(group))
    return torch.stack(tokens), torch.tensor(sizes, dtype=torch.float64), members


@pytest.fixture(name="naive_merge")
def naive_merge_fixture():
    """The loop-based reference merge (independent of fastast_pl.tome.merge)."""
    return naive_merge
