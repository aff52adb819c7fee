"""SAM's mask decoder restructured for "one image, many prompts".

Same weights and the same maths as ``segment_anything``'s ``MaskDecoder`` /
``TwoWayTransformer`` (logits agree with ``SamPredictor`` to float rounding);
per prompt it does about half the arithmetic:

- the dense positional encoding is computed once, not per call;
- what the first two-way block computes from the image alone (key/value
  projections of the token->image attention, query projection of the
  image->token attention) is computed once per image (``prepare``);
- the other cross attentions never project the N = 64 x 64 image tokens: the
  projections are folded into the few prompt tokens instead (associativity of
  the matrix products; see ``_token_to_image`` / ``_image_to_token``), and the
  image->token softmax runs along the long axis;
- the output upscaling (two kernel-2 stride-2 transposed convs) runs
  channels-last as matrix products over the embedding cells that cover the
  image only (both convs are per-cell, so skipping the padding of a
  non-square image is exact), and only the mask tokens asked for are decoded.

Low-resolution logits outside the valid area (image padding) are filled with
``PAD_LOGIT``; they are what a later ``mask_input`` refinement reads there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from segment_anything.modeling import Sam
    from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock

    from engine.models.sam.prompts import ResolvedPrompt

PAD_LOGIT = -20.0


@dataclass(frozen=True, eq=False)
class ImageContext:
    """Per-image decoder state: flat features and keys ``[1, N, C]``, first-block projections."""

    image: torch.Tensor
    keys: torch.Tensor
    t2i_k: torch.Tensor
    t2i_v: torch.Tensor
    i2t_q: torch.Tensor
    grid_hw: tuple[int, int]


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    b, n, c = x.shape
    return x.reshape(b, n, num_heads, c // num_heads).transpose(1, 2)


def _attend(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``attn`` on already projected, head-split q/k/v (batch dims broadcast)."""
    import torch.nn.functional as F

    batch = max(q.shape[0], k.shape[0], v.shape[0])
    q, k, v = (t.expand(batch, -1, -1, -1) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)
    b, h, n, d = out.shape
    return attn.out_proj(out.transpose(1, 2).reshape(b, n, h * d))


def _project(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    heads = attn.num_heads
    return _attend(
        attn,
        _heads(attn.q_proj(q), heads),
        _heads(attn.k_proj(k), heads),
        _heads(attn.v_proj(v), heads),
    )


def _token_to_image(
    attn: Attention, q_in: torch.Tensor, x_k: torch.Tensor, x_v: torch.Tensor
) -> torch.Tensor:
    """Tokens ``[B, T, C]`` attend to image tokens without projecting the N image tokens.

    ``q_h (x W_k,h + b_k,h)^T = (q_h W_k,h) x^T + const`` (softmax ignores the
    constant) and ``P_h (x W_v,h + b_v,h) = (P_h x) W_v,h + b_v,h`` (rows of P
    sum to 1): the big products shrink from N x C x Ci to N x C x heads*T.
    """
    import torch

    heads, (batch, tokens, _) = attn.num_heads, q_in.shape
    q = attn.q_proj(q_in)
    dim = q.shape[2] // heads
    channels = x_k.shape[2]
    w_k = attn.k_proj.weight.view(heads, dim, channels)
    qk = torch.einsum("bthd,hdc->bhtc", q.view(batch, tokens, heads, dim), w_k)
    scores = qk.reshape(batch, heads * tokens, channels) @ x_k.transpose(1, 2)
    p = torch.softmax(scores * dim**-0.5, dim=-1)
    pv = (p @ x_v).view(batch, heads, tokens, channels)
    w_v = attn.v_proj.weight.view(heads, dim, channels)
    out = torch.einsum("bhtc,hdc->bthd", pv, w_v).reshape(batch, tokens, heads * dim)
    return attn.out_proj(out + attn.v_proj.bias)


def _image_to_token(
    attn: Attention,
    x_q: torch.Tensor | None,
    q_heads: torch.Tensor | None,
    k_in: torch.Tensor,
    v_in: torch.Tensor,
) -> torch.Tensor:
    """Image tokens attend to T tokens; output ``[B, N, C]`` without a N x Ci x C product.

    Queries are either raw image tokens ``x_q`` ``[B|1, N, C]`` (the query
    projection is folded into the keys: ``x W_q,h^T k_h^T + b_q,h k_h^T``) or
    projected heads ``q_heads`` ``[1, h, N, d]``. The output projection is
    folded into the values. Scores are laid out ``[B, h, T, N]`` so the softmax
    over the T tokens runs along a long contiguous axis.
    """
    import torch

    heads, (batch, tokens, _) = attn.num_heads, k_in.shape
    k = attn.k_proj(k_in)
    dim = k.shape[2] // heads
    k = k.view(batch, tokens, heads, dim) * dim**-0.5
    if q_heads is not None:
        scores = k.transpose(1, 2) @ q_heads.transpose(2, 3)  # [B, h, T, N]
    else:
        if x_q is None:
            raise ValueError("_image_to_token needs x_q or q_heads")
        channels = x_q.shape[2]
        w_q = attn.q_proj.weight.view(heads, dim, channels)
        a = torch.einsum("bthd,hdc->bhtc", k, w_q).reshape(batch, heads * tokens, channels)
        c = torch.einsum("bthd,hd->bht", k, attn.q_proj.bias.view(heads, dim))
        scores = (a @ x_q.transpose(1, 2) + c.reshape(batch, heads * tokens, 1)).view(
            batch, heads, tokens, -1
        )
    p = torch.softmax(scores, dim=2).view(batch, heads * tokens, -1)
    v = attn.v_proj(v_in).view(batch, tokens, heads, dim)
    w_o = attn.out_proj.weight.view(-1, heads, dim)
    vw = torch.einsum("bthd,chd->bhtc", v, w_o).reshape(batch, heads * tokens, -1)
    out_bias = attn.out_proj.bias.expand(batch, p.shape[2], vw.shape[2])
    return torch.baddbmm(out_bias, p.transpose(1, 2), vw)


class FastMaskDecoder:
    """Prompt encoder + mask decoder of a ``Sam`` for repeated prompts on one image."""

    def __init__(self, sam: Sam) -> None:
        import torch

        self.sam = sam
        self.prompt_encoder = sam.prompt_encoder
        self.decoder = sam.mask_decoder
        self.transformer = self.decoder.transformer
        with torch.inference_mode():
            pe = self.prompt_encoder.get_dense_pe()  # [1, C, h, w]
            self.image_pe = pe.flatten(2).transpose(1, 2).contiguous()  # [1, N, C]
            self.grid_hw = (int(pe.shape[2]), int(pe.shape[3]))
            self.no_mask = self.prompt_encoder.no_mask_embed.weight.reshape(1, 1, -1)
            self.output_tokens = torch.cat(
                [self.decoder.iou_token.weight, self.decoder.mask_tokens.weight], dim=0
            )
            self._up = [self._as_linear(self.decoder.output_upscaling[i]) for i in (0, 3)]
        self.low_res_size = 4 * self.grid_hw[0]
        self.device = self.image_pe.device
        self.norm = self.decoder.output_upscaling[1]
        self.act1 = self.decoder.output_upscaling[2]
        self.act2 = self.decoder.output_upscaling[4]

    @staticmethod
    def _as_linear(conv: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """A kernel-2 stride-2 transposed conv as a linear ``C_in -> 4 * C_out`` (dy, dx, c)."""
        weight: torch.Tensor = conv.weight  # type: ignore[assignment]  # [C_in, C_out, 2, 2]
        bias: torch.Tensor = conv.bias  # type: ignore[assignment]
        c_in, c_out = int(weight.shape[0]), int(weight.shape[1])
        matrix = weight.permute(2, 3, 1, 0).reshape(4 * c_out, c_in).contiguous()
        return matrix, bias.reshape(1, c_out).expand(4, c_out).reshape(-1).contiguous()

    def encode_prompts(
        self,
        prompts: list[ResolvedPrompt],
        scale_xy: tuple[float, float],
        mask_input: Any | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Prompt-encoder output for B prompts: sparse ``[B, T, C]``, dense or None.

        Points (from the first prompt only: one point prompt per call) and boxes
        are in image pixels; ``scale_xy`` maps them to the resized encoder input.
        """
        import torch

        scale = np.array(scale_xy)
        first = prompts[0]
        points = None
        if first.points_xy is not None and first.point_labels is not None:
            coords = torch.as_tensor(first.points_xy * scale, dtype=torch.float, device=self.device)
            labels = torch.as_tensor(first.point_labels, dtype=torch.int, device=self.device)
            points = (coords[None], labels[None])
        boxes = None
        if first.box_xyxy is not None:
            stacked = np.stack([p.box_xyxy for p in prompts if p.box_xyxy is not None])
            boxes = torch.as_tensor(
                stacked * np.tile(scale, 2), dtype=torch.float, device=self.device
            )
        masks = self.check_mask_input(mask_input) if mask_input is not None else None
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=masks)
        return sparse, dense if masks is not None else None

    def check_mask_input(self, mask_input: Any) -> torch.Tensor:
        """``[1, 1, L, L]`` float32 logits from ``[L, L]``, ``[1, L, L]`` or ``[1, 1, L, L]``."""
        import torch

        tensor = torch.as_tensor(mask_input, dtype=torch.float32, device=self.device)
        size = self.low_res_size
        if tensor.numel() != size * size or tensor.shape[-2:] != (size, size):
            raise ValueError(
                f"mask_input must be low-res logits of shape [{size}, {size}] (or [1, {size}, "
                f"{size}]), got {tuple(tensor.shape)}; pass a MaskResult.low_res_logits"
            )
        if not torch.isfinite(tensor).all():
            raise ValueError("mask_input must be finite")
        return tensor.reshape(1, 1, size, size)

    def _first_block_cache(
        self, keys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        block = self.transformer.layers[0]
        kpe = keys + self.image_pe
        t2i, i2t = block.cross_attn_token_to_image, block.cross_attn_image_to_token
        return (
            _heads(t2i.k_proj(kpe), t2i.num_heads),
            _heads(t2i.v_proj(keys), t2i.num_heads),
            _heads(i2t.q_proj(kpe), i2t.num_heads),
        )

    def prepare(self, features: torch.Tensor) -> ImageContext:
        """Image-only work for ``features`` ``[1, C, h, w]`` (fp32 on the decoder's device)."""
        if tuple(features.shape[2:]) != self.grid_hw:
            raise ValueError(
                f"features grid {tuple(features.shape[2:])} does not match the decoder "
                f"grid {self.grid_hw}; was the embedding made by another model?"
            )
        image = features.flatten(2).transpose(1, 2).contiguous()
        keys = image + self.no_mask
        t2i_k, t2i_v, i2t_q = self._first_block_cache(keys)
        return ImageContext(image, keys, t2i_k, t2i_v, i2t_q, self.grid_hw)

    def _block(
        self,
        block: TwoWayAttentionBlock,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        cached: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if block.skip_first_layer_pe:
            queries = _project(block.self_attn, queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + _project(block.self_attn, q, q, queries)
        queries = block.norm1(queries)
        t2i, i2t = block.cross_attn_token_to_image, block.cross_attn_image_to_token
        q = queries + query_pe
        if cached is None:
            kpe = keys + self.image_pe
            attn = _token_to_image(t2i, q, kpe, keys)
        else:
            attn = _attend(t2i, _heads(t2i.q_proj(q), t2i.num_heads), cached[0], cached[1])
        queries = block.norm2(queries + attn)
        queries = block.norm3(queries + block.mlp(queries))
        q = queries + query_pe
        if cached is None:
            out = _image_to_token(i2t, kpe, None, q, queries)
        else:
            out = _image_to_token(i2t, None, cached[2], q, queries)
        return queries, block.norm4(keys + out)

    def decode(
        self,
        context: ImageContext,
        sparse: torch.Tensor,
        dense: torch.Tensor | None,
        mask_indices: list[int],
        valid_grid_hw: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res logits ``[B, M, 4h, 4w]`` (valid part) and IoU predictions ``[B, M]``.

        ``sparse``: ``[B, T, C]`` prompt-encoder tokens; ``dense``: ``[B, C, h, w]``
        from a mask input, or None (then the per-image cache is used).
        ``mask_indices``: which mask tokens to decode (0 = single-mask output,
        1..3 = multimask outputs).
        """
        import torch

        batch = sparse.shape[0]
        tokens = torch.cat([self.output_tokens.expand(batch, -1, -1), sparse], dim=1)
        keys = context.keys
        cached: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = (
            context.t2i_k,
            context.t2i_v,
            context.i2t_q,
        )
        if dense is not None:
            keys = context.image + dense.flatten(2).transpose(1, 2).contiguous()
            cached = None
        queries = tokens
        for i, block in enumerate(self.transformer.layers):
            queries, keys = self._block(block, queries, keys, tokens, cached if i == 0 else None)
        final = self.transformer.final_attn_token_to_image
        attn = _token_to_image(final, queries + tokens, keys + self.image_pe, keys)
        queries = self.transformer.norm_final_attn(queries + attn)
        iou = self.decoder.iou_prediction_head(queries[:, 0])[:, mask_indices]
        hyper = torch.stack(
            [self.decoder.output_hypernetworks_mlps[i](queries[:, 1 + i]) for i in mask_indices],
            dim=1,
        )
        return self._upscale(keys, hyper, valid_grid_hw), iou

    def _upscale(
        self, keys: torch.Tensor, hyper: torch.Tensor, valid_grid_hw: tuple[int, int]
    ) -> torch.Tensor:
        """Masks ``[B, M, 4vh, 4vw]`` from keys ``[B|1, N, C]`` and hyper-weights ``[B, M, C8]``."""
        import torch.nn.functional as F

        gh, gw = self.grid_hw
        vh, vw = valid_grid_hw
        batch, masks = hyper.shape[:2]
        x = keys.reshape(keys.shape[0], gh, gw, -1)[:, :vh, :vw]
        (w1, b1), (w2, b2) = self._up
        x = F.linear(x, w1, b1)  # [B, vh, vw, 4 * C4], order (dy1, dx1, c)
        x = x.reshape(*x.shape[:3], 4, -1)
        x = F.layer_norm(x, (x.shape[-1],), self.norm.weight, self.norm.bias, self.norm.eps)
        x = self.act1(x)  # LayerNorm2d over channels == layer_norm over the last dim
        x = self.act2(F.linear(x, w2, b2))  # [B, vh, vw, 4, 4 * C8], order (dy2, dx2, c)
        c8 = hyper.shape[2]
        x = x.reshape(x.shape[0], -1, c8)  # [B, vh*vw*16, C8]
        out = hyper @ x.transpose(1, 2)  # [B, M, vh*vw*16]
        out = out.reshape(batch, masks, vh, vw, 2, 2, 2, 2)  # (y, x, dy1, dx1, dy2, dx2)
        out = out.permute(0, 1, 2, 4, 6, 3, 5, 7)
        return out.reshape(batch, masks, 4 * vh, 4 * vw)


def valid_grid(
    input_size_hw: tuple[int, int], img_size: int, grid_hw: tuple[int, int]
) -> tuple[int, int]:
    """Embedding cells needed to decode the unpadded image (one spare for interpolation)."""
    low_h, low_w = 4 * grid_hw[0], 4 * grid_hw[1]
    rows = min(low_h, math.ceil(input_size_hw[0] * low_h / img_size) + 1)
    cols = min(low_w, math.ceil(input_size_hw[1] * low_w / img_size) + 1)
    return min(grid_hw[0], math.ceil(rows / 4)), min(grid_hw[1], math.ceil(cols / 4))
