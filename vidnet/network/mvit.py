"""MViTv2: a multiscale vision transformer with pooling attention and decomposed relative positions.

Li et al., "MViTv2: Improved Multiscale Vision Transformers for Classification and Detection",
arXiv:2112.01526 (Fan et al., "Multiscale Vision Transformers", arXiv:2104.11227, for the pooling design).

``mvit_v2_s`` is the 16-block Kinetics model (34,537,744 parameters at 400 classes, equal to the PySlowFast
``MVITv2_S_16x4`` configuration and to torchvision's ``mvit_v2_s``): a 3x7x7 patch embedding with stride 2x4x4
to 96 channels and a class token; at blocks 1, 3 and 14 the width and the heads double and the queries are
pooled by 1x2x2; keys and values are pooled 1x8x8 at the start, the stride shrinking with each query pooling
(down to 1x1x1); each block is pre-norm pooling attention
(:class:`~vidnet.network.layers.pooling_attention.PoolingAttention`), with the width change inside the
attention and a linear projection (plus a max-pool where the queries are pooled) on the shortcut, then a 4x
MLP with GELU; stochastic depth rises linearly to 0.2. The class token, after a final layer norm, is classified
after dropout 0.5.

The relative-position tables are sized for the clip given as ``clip`` (16x224x224); another clip length or size
works, with the tables linearly resampled as the reference code does. The reference torchvision model only
accepts the clip it was built for.

Checkpoints of PySlowFast (``model_state``) and torchvision load through
:func:`~vidnet.network.weights.load_weights` (see :meth:`MViTV2.remap_original_state_dict`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from vidnet.network._registry import register_model
from vidnet.network.layers.drop_path import DropPath
from vidnet.network.layers.pooling_attention import PoolingAttention, pool_tokens
from vidnet.network.weights import KeyRule, rename_key

__all__ = ["MViTV2", "MultiscaleBlock", "mvit_v2"]

PAPER = ("MViTv2: Improved Multiscale Vision Transformers for Classification and Detection "
         "(Li et al., arXiv:2112.01526)")


class Mlp(nn.Module):
    """Linear, GELU, linear."""

    def __init__(self, dim: int, hidden: int, out: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MultiscaleBlock(nn.Module):
    """Pre-norm pooling attention and MLP, each with a residual; the width changes inside the attention."""

    def __init__(self, dim_in: int, dim_out: int, num_heads: int, *, stride_q: Sequence[int], stride_kv: Sequence[int],
                 grid: Sequence[int], mlp_ratio: float = 4.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim_in, eps=1e-6)
        self.attn = PoolingAttention(dim_in, dim_out, num_heads, stride_q=stride_q, stride_kv=stride_kv, grid=grid)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = Mlp(dim_out, int(dim_out * mlp_ratio), dim_out)
        self.proj = nn.Linear(dim_in, dim_out) if dim_in != dim_out else None
        self.pool_skip = None
        if any(s > 1 for s in stride_q):
            kernel = [s + 1 if s > 1 else s for s in stride_q]
            self.pool_skip = nn.MaxPool3d(kernel, stride=tuple(stride_q), padding=[k // 2 for k in kernel])

    def forward(self, x: torch.Tensor, thw: tuple[int, int, int]) -> tuple[torch.Tensor, tuple[int, int, int]]:
        x_norm = self.norm1(x)
        x_attn, new_thw = self.attn(x_norm, thw)
        if self.proj is not None:
            x = self.proj(x_norm)
        if self.pool_skip is not None:
            x, _ = pool_tokens(x, thw, self.pool_skip)
        x = x + self.drop_path(x_attn)
        return x + self.drop_path(self.mlp(self.norm2(x))), new_thw


class MViTV2(nn.Module):
    """MViTv2 (see the module docstring).

    Args:
        num_classes: classifier outputs.
        embed_dim: width after the patch embedding.
        depth: number of blocks.
        num_heads: heads of the first stage.
        stage_starts: blocks at which the width and heads double and the queries are pooled by ``1x2x2``.
        kv_stride: key/value pooling stride of the first block (divided by each query pooling, at least 1).
        clip: clip (T, H, W) the relative-position tables are sized for.
        mlp_ratio: MLP hidden width over the token width.
        drop_path: stochastic-depth probability of the last block (0 for the first, linear in between).
        dropout: dropout before the classifier.
    """

    min_input = (2, 32, 32)

    def __init__(
        self,
        *,
        num_classes: int = 400,
        embed_dim: int = 96,
        depth: int = 16,
        num_heads: int = 1,
        stage_starts: Sequence[int] = (1, 3, 14),
        kv_stride: Sequence[int] = (1, 8, 8),
        clip: Sequence[int] = (16, 224, 224),
        mlp_ratio: float = 4.0,
        drop_path: float = 0.2,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv3d(3, embed_dim, (3, 7, 7), stride=(2, 4, 4), padding=(1, 3, 3))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        grid = [clip[0] // 2, clip[1] // 4, clip[2] // 4]
        dim, heads, kv = embed_dim, num_heads, list(kv_stride)
        blocks = []
        for i in range(depth):
            stride_q = [1, 1, 1]
            dim_out = dim
            if i in stage_starts:
                stride_q, dim_out, heads = [1, 2, 2], dim * 2, heads * 2
                kv = [max(k // s, 1) for k, s in zip(kv, stride_q, strict=True)]
            blocks.append(MultiscaleBlock(dim, dim_out, heads, stride_q=stride_q, stride_kv=kv, grid=grid,
                                          mlp_ratio=mlp_ratio, drop_path=drop_path * i / max(depth - 1, 1)))
            grid = [g // s for g, s in zip(grid, stride_q, strict=True)]
            dim = dim_out
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, PoolingAttention):
                for table in (m.rel_pos_t, m.rel_pos_h, m.rel_pos_w):
                    nn.init.trunc_normal_(table, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"expected a clip B x C x T x H x W, got shape {tuple(x.shape)}")
        x = self.patch_embed.proj(x)
        thw = tuple(x.shape[2:])
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x.flatten(2).transpose(1, 2)], dim=1)
        for block in self.blocks:
            x, thw = block(x, thw)
        return self.fc(self.dropout(self.norm(x)[:, 0]))

    def remap_original_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename a PySlowFast or torchvision MViTv2 state dict to this model's keys.

        PySlowFast uses this model's names except ``head.projection`` (here ``fc``). torchvision:
        ``conv_proj`` -> ``patch_embed.proj``, ``pos_encoding.class_token`` (a vector) -> ``cls_token``
        (``1 x 1 x C``), ``attn.project.0`` -> ``attn.proj``, ``attn.pool_{q,k,v}.pool`` -> ``attn.pool_{q,k,v}``,
        ``attn.pool_{q,k,v}.norm_act.0`` -> ``attn.norm_{q,k,v}``, ``mlp.0``/``mlp.3`` -> ``mlp.fc1``/``mlp.fc2``,
        ``blocks.i.project`` -> ``blocks.i.proj``, ``head.1`` -> ``fc``. Unknown keys pass unchanged.
        """
        out = {}
        for key, value in state_dict.items():
            key = rename_key(key, _MVIT_RULES)
            if key == "cls_token" and value.dim() == 1:
                value = value.reshape(1, 1, -1)
            out[key] = value
        return out


_MVIT_RULES: list[KeyRule] = [
    (r"^head\.projection\.", "fc."),
    (r"^conv_proj\.", "patch_embed.proj."),
    (r"^pos_encoding\.class_token$", "cls_token"),
    (r"\.attn\.project\.0\.", ".attn.proj."),
    (r"\.attn\.pool_([qkv])\.pool\.", r".attn.pool_\1."),
    (r"\.attn\.pool_([qkv])\.norm_act\.0\.", r".attn.norm_\1."),
    (r"\.mlp\.0\.", ".mlp.fc1."),
    (r"\.mlp\.3\.", ".mlp.fc2."),
    (r"^(blocks\.\d+)\.project\.", r"\1.proj."),
    (r"^head\.1\.", "fc."),
]


def mvit_v2(*, num_classes: int = 400, **options) -> MViTV2:
    """Build an :class:`MViTV2`; ``options`` override its settings (e.g. ``clip=(8, 112, 112)``)."""
    return MViTV2(num_classes=num_classes, **options)


register_model("mvit_v2_s", family="mvit_v2", paper=PAPER, depth="s")(mvit_v2)
