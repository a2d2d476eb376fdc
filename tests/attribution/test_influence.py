"""LiSSA and DataInf match the formulas they implement, on small random matrices."""

from __future__ import annotations

import torch

from driftscope_llm.attribution.methods.base import Block
from driftscope_llm.attribution.methods.influence import (
    datainf_factors,
    datainf_inverse,
    lissa_inverse,
)

INV_RTOL = 1e-4


class Rows:
    def __init__(self, g: torch.Tensor, blocks: list[Block]) -> None:
        self.g, self.blocks = g, blocks

    def iter_raw_rows(self):
        yield from torch.split(self.g, 7)

    @property
    def count(self) -> int:
        return self.g.shape[0]


def test_lissa_converges_to_damped_inverse() -> None:
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(50, 6, generator=gen, dtype=torch.float64)
    h = g.T @ g / 50
    v = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    d, s = 0.05, float(torch.linalg.eigvalsh(h).max()) * 1.05
    got = lissa_inverse(v, h, damping=d, scale=s, depth=5000)
    want = torch.linalg.solve(h + s * d * torch.eye(6, dtype=torch.float64), v.T).T
    torch.testing.assert_close(got, want, rtol=INV_RTOL, atol=INV_RTOL)
    shallow = lissa_inverse(v, h, damping=d, scale=None, depth=3)
    assert not torch.allclose(shallow, want, rtol=0.01)  # truncation is real


def test_datainf_is_the_sherman_morrison_average() -> None:
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(30, 4 + 3, generator=gen, dtype=torch.float64)
    rows = Rows(g, [Block("a", 4, 40), Block("b", 3, 9)])
    v = torch.randn(2, 7, generator=gen, dtype=torch.float64)
    for (lam, m), sl, block in zip(datainf_factors(rows, 0.1), (slice(0, 4), slice(4, 7)),
                                   rows.blocks, strict=True):
        gl = g[:, sl]
        want_lam = 0.1 * float((gl**2).sum(1).mean()) / block.n_params
        assert abs(lam - want_lam) < 1e-12
        eye = torch.eye(gl.shape[1], dtype=torch.float64)
        inv = sum(eye - torch.outer(x, x) / (lam + x @ x) for x in gl) / (len(gl) * lam)
        got = datainf_inverse(v[:, sl], lam, m).double()
        want = (inv @ v[:, sl].T).T
        atol = INV_RTOL * float(want.abs().max())
        torch.testing.assert_close(got, want, rtol=INV_RTOL, atol=atol)
