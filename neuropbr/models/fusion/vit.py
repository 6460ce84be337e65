"""Cross-view ViT fusion (``fusion=vit``): attention over the bottleneck tokens of all views."""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from timm.layers import Mlp as TimmMlp
from timm.models.vision_transformer import Attention as TimmAttention
from timm.models.vision_transformer import Block
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from neuropbr.utils.checks import check_shape

log = logging.getLogger(__name__)


class Attention(TimmAttention):
    """timm's multi-head self-attention (``qkv``, ``proj``; ``F.scaled_dot_product_attention``,
    i.e. flash/efficient kernels on GPU, unless ``TIMM_FUSED_ATTN=0``) with this project's
    defaults: a bias on the query/key/value projection.

    Args:
        dim: token width.
        num_heads: heads; ``dim`` must be divisible by it.
        qkv_bias: bias on the query/key/value projection.
        attn_drop: dropout on the attention weights (training only).
        proj_drop: dropout after the output projection.
    """

    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0
    ) -> None:
        super().__init__(
            dim, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop
        )


class Mlp(TimmMlp):
    """timm's ``Mlp``: ``Linear -> GELU -> Dropout -> Linear -> Dropout`` (fc1, fc2)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__(dim, hidden_features=hidden, act_layer=nn.GELU, drop=drop)


class TransformerBlock(Block):
    """timm's pre-norm ViT ``Block``: ``x + DropPath(Attn(LN(x)))``, then ``x + DropPath(Mlp(LN(x)))``.

    Parameters ``norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2`` as in the hand-written
    block it replaced, so older checkpoints load; ``torch.nn.LayerNorm`` (eps 1e-5) rather than
    timm's default norm layer keeps their numbers.

    Args:
        dim: token width.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / ``dim``.
        qkv_bias: bias on the query/key/value projection.
        dropout: dropout on the attention weights, the attention projection and the MLP.
        drop_path: stochastic-depth probability of both residual branches.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        dropout: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__(
            dim,
            num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            proj_drop=dropout,
            attn_drop=dropout,
            drop_path=drop_path,
            act_layer=nn.GELU,
            norm_layer=nn.LayerNorm,
            attn_layer=TimmAttention,
        )


def sincos_pos_embed_2d(h: int, w: int, dim: int, device: torch.device | None = None) -> Tensor:
    """Fixed 2D sine-cosine position embedding (MAE's), for any grid size.

    Args:
        h, w: grid size.
        dim: embedding width, divisible by 4 (a quarter each for sin/cos of x and y).
        device: where to create it.

    Returns:
        (h * w, dim) float32, row-major over the grid.
    """
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter)  # (D/4,)
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    angles_x = xs.reshape(-1, 1) * omega  # (h*w, D/4)
    angles_y = ys.reshape(-1, 1) * omega  # (h*w, D/4)
    return torch.cat([angles_x.sin(), angles_x.cos(), angles_y.sin(), angles_y.cos()], dim=1)  # (h*w, D)


class ViTFusion(nn.Module):
    """Cross-view attention over the bottleneck tokens of all views, then an order-independent
    per-location aggregation over the views; follows :class:`~neuropbr.models.contracts.Fusion`.

    Per view, a 1x1 conv (no bias) projects the bottleneck to ``dim``. The (optionally
    average-pooled) maps of all V views become one sequence of ``V * h' * w'`` tokens, to which
    are added

    - a 2D sine-cosine position embedding (the same for every view, so a texel attends to the
      texel at the same place in the other views), and
    - a *view* embedding derived from the view's own content: an MLP of its pooled features,
      added to all of that view's tokens. It tells attention which tokens come from the same view
      (a per-image signature: lighting, artifacts), yet stays order-independent. A learned
      per-index embedding (view 0, view 1, ...) would make the output depend on the order of
      the views and cap V at the table size, so it is deliberately not used.

    Pre-norm transformer blocks then attend across all views at once. The change they make to
    the tokens is upsampled back to ``(h, w)`` (bilinear, when pooled) and added to the projected
    features. Finally the views are aggregated per location by a softmax over a learned score of
    each view (attention pooling over views), followed by ``Linear + LayerNorm``; with a single
    view its weight is 1, so the score only learns from samples with V >= 2.

    Differences from the original stack: it fused the views with a per-location
    ``Linear(V * dim -> dim)`` over the concatenated views, which depends on the order of the
    views and fixes V at build time; the softmax-weighted aggregation here is order-independent
    and works for any V >= 1 (score, Linear and LayerNorm: ``dim^2 + 4 dim`` parameters instead
    of ``V dim^2 + 3 dim``). With ``view_embedding=False, pos_embedding=False, token_stride=1`` the
    tokens are the original's plain tokens.

    Args:
        in_channels: channels of the encoder's bottleneck.
        dim: token width (``out_channels``).
        depth: number of transformer blocks.
        num_heads: attention heads; ``dim`` must be divisible by it.
        mlp_ratio: MLP hidden width / ``dim``.
        qkv_bias: bias on the query/key/value projection.
        dropout: dropout on attention weights, projections and MLPs.
        drop_path: stochastic depth, ``linspace(0, drop_path, depth)`` over the blocks.
        token_stride: average-pool the bottleneck by this factor before attention.
        max_tokens: the stride is raised automatically until ``V * h' * w' <= max_tokens``
            (``None``: never), so a 2048 px input does not create an impossible sequence.
        view_embedding: add the content-derived view embedding.
        pos_embedding: add the 2D sine-cosine position embedding (``dim`` divisible by 4).
        grad_checkpointing: recompute each block in the backward pass.
    """

    def __init__(
        self,
        in_channels: int,
        dim: int = 2048,
        depth: int = 4,
        num_heads: int = 32,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        dropout: float = 0.1,
        drop_path: float = 0.1,
        token_stride: int = 1,
        max_tokens: int | None = 16384,
        view_embedding: bool = True,
        pos_embedding: bool = True,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if dim < 1 or depth < 1 or num_heads < 1:
            raise ValueError(
                f"fusion.dim={dim}, fusion.depth={depth}, fusion.num_heads={num_heads}; expected all >= 1"
            )
        if dim % num_heads:
            raise ValueError(f"fusion.dim={dim} must be divisible by fusion.num_heads={num_heads}")
        if pos_embedding and dim % 4:
            raise ValueError(f"fusion.dim={dim} must be divisible by 4 for fusion.pos_embedding=true")
        if token_stride < 1:
            raise ValueError(f"fusion.token_stride={token_stride}; expected >= 1")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"fusion.max_tokens={max_tokens}; expected >= 1 or null")
        if not 0.0 <= dropout < 1.0 or not 0.0 <= drop_path < 1.0:
            raise ValueError(f"fusion.dropout={dropout}, fusion.drop_path={drop_path}; expected in [0, 1)")
        self.in_channels = in_channels
        self.out_channels = dim
        self.dim = dim
        self.token_stride = token_stride
        self.max_tokens = max_tokens
        self.pos_embedding = pos_embedding
        self.grad_checkpointing = grad_checkpointing
        self._logged_strides: set[tuple[int, int, int]] = set()

        self.proj = nn.Conv2d(in_channels, dim, kernel_size=1, bias=False)
        hidden = max(dim // 4, 8)
        self.view_embed = (
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
            if view_embedding
            else None
        )
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]  # linspace(0, drop_path, depth)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio, qkv_bias, dropout, rate) for rate in rates
        )
        # No bias: a constant added to every view's score cancels in the softmax.
        self.view_score = nn.Linear(dim, 1, bias=False)
        self.out_proj = nn.Linear(dim, dim)
        self.out_norm = nn.LayerNorm(dim)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):  # timm ViT init; small view scores start near a mean
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def stride_for(self, num_views: int, h: int, w: int) -> int:
        """The token stride used for V views of an (h, w) bottleneck.

        Returns:
            ``token_stride``, raised until ``V * ceil(h / s) * ceil(w / s) <= max_tokens`` (or
            the map is pooled to a single token per view).
        """
        stride = self.token_stride
        if self.max_tokens is None:
            return stride
        while num_views * math.ceil(h / stride) * math.ceil(w / stride) > self.max_tokens and (
            math.ceil(h / stride) > 1 or math.ceil(w / stride) > 1
        ):
            stride += 1
        if stride != self.token_stride and (num_views, h, w) not in self._logged_strides:
            self._logged_strides.add((num_views, h, w))
            log.info(
                "fusion: %d views of %dx%d tokens exceed fusion.max_tokens=%d; attending at token stride %d",
                num_views,
                h,
                w,
                self.max_tokens,
                stride,
            )
        return stride

    def _run_blocks(self, tokens: Tensor) -> Tensor:
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, use_reentrant=False)
            else:
                tokens = block(tokens)
        return tokens

    def forward(self, x: Tensor) -> Tensor:
        """Fuse the views.

        Args:
            x: (B, V, C_in, h, w) bottleneck features of every view, any V >= 1.

        Returns:
            (B, dim, h, w), independent of the order of the views.
        """
        dims = check_shape(x, "B V C h w", "fusion input", C=self.in_channels)
        batch, num_views, h, w = dims["B"], dims["V"], dims["h"], dims["w"]
        feats = self.proj(x.flatten(0, 1))  # (B*V, D, h, w)

        stride = self.stride_for(num_views, h, w)
        hp, wp = math.ceil(h / stride), math.ceil(w / stride)  # attention grid (h', w')
        pooled = feats if stride == 1 else F.adaptive_avg_pool2d(feats, (hp, wp))  # (B*V, D, h', w')
        tokens = pooled.flatten(2).transpose(1, 2)  # (B*V, h'*w', D)
        if self.pos_embedding:
            pos = sincos_pos_embed_2d(hp, wp, self.dim, tokens.device).to(tokens.dtype)  # (h'*w', D)
            tokens = tokens + pos
        if self.view_embed is not None:
            tokens = tokens + self.view_embed(feats.mean(dim=(2, 3)))[:, None, :]  # (B*V, 1, D) per view
        tokens = tokens.reshape(batch, num_views * hp * wp, self.dim)  # (B, V*h'*w', D): all views

        update = self._run_blocks(tokens) - tokens  # (B, V*h'*w', D): what attention added
        update = update.reshape(batch * num_views, hp, wp, self.dim).permute(0, 3, 1, 2)  # (B*V, D, h', w')
        if stride != 1:
            update = F.interpolate(
                update, size=(h, w), mode="bilinear", align_corners=False
            )  # (B*V, D, h, w)
        views = (feats + update).unflatten(0, (batch, num_views)).permute(0, 3, 4, 1, 2)  # (B, h, w, V, D)

        weights = self.view_score(views).softmax(dim=3)  # (B, h, w, V, 1), sums to 1 over views
        fused = (weights * views).sum(dim=3)  # (B, h, w, D)
        return self.out_norm(self.out_proj(fused)).permute(0, 3, 1, 2)  # (B, D, h, w)
