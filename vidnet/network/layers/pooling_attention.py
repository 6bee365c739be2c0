"""Multi-head pooling attention with decomposed relative positions (MViTv2).

Li et al., "MViTv2: Improved Multiscale Vision Transformers for Classification and Detection",
arXiv:2112.01526; Fan et al., "Multiscale Vision Transformers", arXiv:2104.11227.

Tokens are ``B x (1 + T*H*W) x C`` with a class token first. Queries, keys and values are each pooled by a
channel-wise 3D convolution (per head, shared across heads) followed by a layer norm over the head channels;
the class token bypasses the pooling but not the norm. The attention logits get a relative-position term
decomposed over T, H and W (each a table of ``2 * size - 1`` entries, linearly resampled when the clip's token
grid differs from the one the tables were made for), and the pooled queries are added back to the attention
output (residual pooling), class token excepted.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["PoolingAttention", "pool_tokens", "relative_position_bias"]

Thw = tuple[int, int, int]


def pool_tokens(x: torch.Tensor, thw: Thw, pool: nn.Module, norm: nn.Module | None = None) -> tuple[torch.Tensor, Thw]:
    """Pool ``x`` (``B x heads x (1 + T*H*W) x d`` or ``B x (1 + T*H*W) x d``) over its token grid ``thw``.

    The class token (index 0) is set aside, the grid is pooled per head, the class token is put back, then
    ``norm`` (over ``d``) is applied to all tokens.
    """
    squeeze = x.dim() == 3
    if squeeze:
        x = x.unsqueeze(1)
    b, heads, _, d = x.shape
    cls, grid = x[:, :, :1], x[:, :, 1:]
    grid = grid.reshape(b * heads, *thw, d).permute(0, 4, 1, 2, 3)
    grid = pool(grid)
    new_thw = tuple(grid.shape[2:])
    grid = grid.reshape(b, heads, d, -1).transpose(2, 3)
    x = torch.cat([cls, grid], dim=2)
    if norm is not None:
        x = norm(x)
    return (x.squeeze(1) if squeeze else x), new_thw


def _resample(table: torch.Tensor, size: int) -> torch.Tensor:
    if table.shape[0] == size:
        return table
    return F.interpolate(table.t().unsqueeze(0), size=size, mode="linear").squeeze(0).t()


def _offsets(q: int, k: int, table: torch.Tensor) -> torch.Tensor:
    """Rows of ``table`` for every (query, key) pair along one axis: ``q x k x d``.

    The coordinates of the coarser grid are stretched to the finer one's scale, so that the relative offset
    ``q_pos - k_pos`` spans ``0 .. 2 * max(q, k) - 2`` after shifting by ``k - 1``.
    """
    table = _resample(table, 2 * max(q, k) - 1)
    q_scale, k_scale = max(k / q, 1.0), max(q / k, 1.0)
    qi = torch.arange(q, device=table.device)[:, None] * q_scale
    ki = torch.arange(k, device=table.device)[None, :] * k_scale
    return table[(qi - ki + (k - 1) * k_scale).long()]


def relative_position_bias(q: torch.Tensor, q_thw: Thw, k_thw: Thw, rel_t: torch.Tensor, rel_h: torch.Tensor,
                           rel_w: torch.Tensor) -> torch.Tensor:
    """The decomposed relative-position logits ``B x heads x (Tq*Hq*Wq) x (Tk*Hk*Wk)`` of queries ``q``
    (``B x heads x (1 + Tq*Hq*Wq) x d``, class token first and excluded)."""
    b, heads, _, d = q.shape
    (qt, qh, qw), (kt, kh, kw) = q_thw, k_thw
    r = q[:, :, 1:].reshape(b, heads, qt, qh, qw, d)
    bias_t = torch.einsum("bnthwc,tkc->bnthwk", r, _offsets(qt, kt, rel_t))
    bias_h = torch.einsum("bnthwc,hkc->bnthwk", r, _offsets(qh, kh, rel_h))
    bias_w = torch.einsum("bnthwc,wkc->bnthwk", r, _offsets(qw, kw, rel_w))
    bias = bias_t[..., :, None, None] + bias_h[..., None, :, None] + bias_w[..., None, None, :]
    return bias.reshape(b, heads, qt * qh * qw, kt * kh * kw)


class PoolingAttention(nn.Module):
    """MViTv2 attention: ``dim_in -> dim_out`` tokens, queries pooled with ``stride_q``, keys/values with
    ``stride_kv`` (3x3x3 channel-wise kernels), relative positions and residual pooling.

    Args:
        dim_in: input token width.
        dim_out: output token width (the attention works at this width).
        num_heads: attention heads.
        stride_q: query pooling stride (T, H, W).
        stride_kv: key/value pooling stride.
        grid: token grid (T, H, W) the relative-position tables are sized for.
        kernel: pooling kernel.
    """

    def __init__(self, dim_in: int, dim_out: int, num_heads: int, *, stride_q: Sequence[int], stride_kv: Sequence[int],
                 grid: Sequence[int], kernel: Sequence[int] = (3, 3, 3)) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim_out // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim_in, 3 * dim_out)
        self.proj = nn.Linear(dim_out, dim_out)
        pad = [k // 2 for k in kernel]
        for name, stride in (("q", stride_q), ("k", stride_kv), ("v", stride_kv)):
            setattr(self, f"pool_{name}", nn.Conv3d(self.head_dim, self.head_dim, tuple(kernel), stride=tuple(stride),
                                                    padding=pad, groups=self.head_dim, bias=False))
            setattr(self, f"norm_{name}", nn.LayerNorm(self.head_dim, eps=1e-6))
        size = max(grid[1:])
        spatial = 2 * max(size // stride_q[1], size // stride_kv[1]) - 1
        self.rel_pos_h = nn.Parameter(torch.zeros(spatial, self.head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(spatial, self.head_dim))
        self.rel_pos_t = nn.Parameter(torch.zeros(2 * grid[0] - 1, self.head_dim))

    def forward(self, x: torch.Tensor, thw: Thw) -> tuple[torch.Tensor, Thw]:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, q_thw = pool_tokens(q, thw, self.pool_q, self.norm_q)
        k, k_thw = pool_tokens(k, thw, self.pool_k, self.norm_k)
        v, _ = pool_tokens(v, thw, self.pool_v, self.norm_v)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = relative_position_bias(q, q_thw, k_thw, self.rel_pos_t, self.rel_pos_h, self.rel_pos_w)
        attn[:, :, 1:, 1:] += bias  # in place is safe: the matmul's backward needs q and k, not its output
        out = attn.softmax(dim=-1) @ v
        out[:, :, 1:] += q[:, :, 1:]
        return self.proj(out.transpose(1, 2).reshape(b, -1, self.num_heads * self.head_dim)), q_thw
