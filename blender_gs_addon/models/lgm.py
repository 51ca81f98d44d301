"""The LGM feed-forward network: 4 posed views in, 3D Gaussians out.

Our own implementation of the architecture of "LGM: Large Multi-View Gaussian Model" (Tang et
al. 2024, MIT-licensed reference code 3DTopia/LGM), written so that the published "big"
checkpoint loads into it with ``strict=True``: module names and registration order reproduce
the reference state-dict keys exactly (tests/data/lgm_big_state_dict_keys.txt).

Shape of the network (big preset)::

    [B, V=4, 9, 256, 256]  normalised RGB + Plücker rays per view
      → conv_in → 6 down blocks (64 … 1024 channels, 2 ResNet layers each, stride-2 conv between)
      → mid block (ResNet, attention, ResNet)
      → 5 up blocks (1024 … 128 channels, 3 ResNet layers each, skip concatenation, ×2 upsampling)
      → GroupNorm, SiLU, conv_out (14) → 1×1 conv (14)
    [B, V·128·128, 14]    one Gaussian per output pixel, view-major then row-major

Attention blocks are *multi-view*: the tokens of all V views of a sample attend to each other,
which is how the network fuses the views. Attention goes through
:func:`torch.nn.functional.scaled_dot_product_attention` (flash / memory-efficient kernels where
the backend has them), so there is no xformers dependency.

Presets: ``"big"`` is the published model (415,042,848 parameters); ``"tiny"`` is the same code
with small channel counts, for CPU tests only (it is *not* the reference's "tiny" ablation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..devices import default_dtype_for
from ..errors import GSError
from .lgm_io import GAUSSIAN_CHANNELS

__all__ = [
    "GAUSSIAN_CHANNELS",
    "LGM",
    "LGMConfig",
    "LGM_PRESETS",
    "activate_gaussians",
    "build_lgm",
    "lgm_config",
]


@dataclass(frozen=True)
class LGMConfig:
    """Hyper-parameters of the U-Net; everything that changes a weight shape lives here."""

    down_channels: tuple[int, ...]
    down_attention: tuple[bool, ...]
    up_channels: tuple[int, ...]
    up_attention: tuple[bool, ...]
    mid_attention: bool = True
    layers_per_block: int = 2  # up blocks use one more
    attention_heads: int = 16
    norm_groups: int = 32
    norm_eps: float = 1e-5
    skip_scale: float = math.sqrt(0.5)  # keeps the variance of residual sums near 1
    num_views: int = 4
    in_channels: int = 9  # RGB + 6 Plücker coordinates
    out_channels: int = GAUSSIAN_CHANNELS.width

    @property
    def input_multiple(self) -> int:
        """Input height/width must be a multiple of this (one halving per down block but last)."""
        return 2 ** (len(self.down_channels) - 1)

    @property
    def output_stride(self) -> int:
        """Input size / output size: the up path has fewer ×2 steps than the down path."""
        return 2 ** (len(self.down_channels) - len(self.up_channels))

    def check(self) -> None:
        if len(self.down_attention) != len(self.down_channels):
            raise GSError("LGM config: down_attention needs one flag per down block")
        if len(self.up_attention) != len(self.up_channels):
            raise GSError("LGM config: up_attention needs one flag per up block")
        if not 1 <= len(self.up_channels) <= len(self.down_channels):
            raise GSError("LGM config: need 1..len(down_channels) up blocks")
        # Up block i concatenates the outputs of down level −(i+1), so their widths must agree.
        mirrored = tuple(reversed(self.down_channels))[:len(self.up_channels)]
        if self.up_channels != mirrored:
            raise GSError(f"LGM config: up_channels must mirror down_channels, i.e. {mirrored}")


LGM_PRESETS: dict[str, LGMConfig] = {
    # The published checkpoint (reference config "big"); output 128×128 per 256×256 view.
    "big": LGMConfig(
        down_channels=(64, 128, 256, 512, 1024, 1024),
        down_attention=(False, False, False, True, True, True),
        up_channels=(1024, 1024, 512, 256, 128),
        up_attention=(True, True, True, False, False),
    ),
    # Same code at toy width, output stride 2 like big and attention only at the lowest
    # resolution, so CPU tests run in well under a second even on 4×256² inputs.
    "tiny": LGMConfig(
        down_channels=(8, 16, 16, 32),
        down_attention=(False, False, False, True),
        up_channels=(32, 16, 16),
        up_attention=(True, False, False),
        attention_heads=2,
        norm_groups=4,
    ),
}


def lgm_config(variant: str) -> LGMConfig:
    try:
        return LGM_PRESETS[variant]
    except KeyError:
        raise GSError(f"unknown LGM variant {variant!r}; choose one of "
                      f"{', '.join(LGM_PRESETS)}") from None


# ---------------------------------------------------------------------------------- blocks
class ResnetBlock(nn.Module):
    """GN → SiLU → conv3 → GN → SiLU → conv3, plus a (1×1 when widths differ) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, cfg: LGMConfig):
        super().__init__()
        self.skip_scale = cfg.skip_scale
        self.norm1 = nn.GroupNorm(cfg.norm_groups, in_channels, eps=cfg.norm_eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = nn.GroupNorm(cfg.norm_groups, out_channels, eps=cfg.norm_eps)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.shortcut = (nn.Conv2d(in_channels, out_channels, kernel_size=1)
                         if in_channels != out_channels else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [BV, Cin, H, W] → [BV, Cout, H, W]
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (h + self.shortcut(x)) * self.skip_scale


class TokenAttention(nn.Module):
    """Multi-head self-attention over a token sequence (qkv without bias, proj with bias)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise GSError(f"LGM config: {dim} channels do not split into {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=True)

    def split_heads(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B, N, C] → q, k, v each [B, heads, N, C/heads].

        The checkpoint's qkv rows are ordered (q|k|v, head, channel-in-head).
        """
        b, n, c = tokens.shape
        qkv = self.qkv(tokens).reshape(b, n, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def merge_heads(self, out: torch.Tensor) -> torch.Tensor:
        """[B, heads, N, d] → projected [B, N, heads·d]."""
        b, h, n, d = out.shape
        return self.proj(out.transpose(1, 2).reshape(b, n, h * d))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # [B, N, C] → [B, N, C]
        q, k, v = self.split_heads(tokens)
        return self.merge_heads(F.scaled_dot_product_attention(q, k, v))


class MultiViewAttention(nn.Module):
    """Attention across the pixels of all views of a sample, with a scaled residual."""

    def __init__(self, dim: int, cfg: LGMConfig):
        super().__init__()
        self.num_views = cfg.num_views
        self.skip_scale = cfg.skip_scale
        self.norm = nn.GroupNorm(cfg.norm_groups, dim, eps=cfg.norm_eps)
        self.attn = TokenAttention(dim, cfg.attention_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B·V, C, H, W] → same
        bv, c, h, w = x.shape
        v = self.num_views
        tokens = self.norm(x).reshape(bv // v, v, c, h, w).permute(0, 1, 3, 4, 2)
        tokens = self.attn(tokens.reshape(bv // v, v * h * w, c))  # [B, V·H·W, C]
        out = tokens.reshape(bv // v, v, h, w, c).permute(0, 1, 4, 2, 3).reshape(bv, c, h, w)
        return (out + x) * self.skip_scale


def _attention_or_identity(enabled: bool, dim: int, cfg: LGMConfig) -> nn.Module:
    # Identity has no state, so a block without attention has no attns.* keys — as in the
    # checkpoint — while nets[i] and attns[i] stay paired by index.
    return MultiViewAttention(dim, cfg) if enabled else nn.Identity()


class DownBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, *, downsample: bool,
                 attention: bool, cfg: LGMConfig):
        super().__init__()
        widths = [in_channels] + [out_channels] * (cfg.layers_per_block - 1)
        self.nets = nn.ModuleList(ResnetBlock(w, out_channels, cfg) for w in widths)
        self.attns = nn.ModuleList(
            _attention_or_identity(attention, out_channels, cfg) for _ in widths)
        self.downsample = (nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=2,
                                     padding=1) if downsample else None)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for net, attn in zip(self.nets, self.attns):
            x = attn(net(x))
            skips.append(x)
        if self.downsample is not None:
            x = self.downsample(x)
            skips.append(x)
        return x, skips


class MidBlock(nn.Module):
    """ResNet, then (attention, ResNet) once — at the lowest resolution."""

    def __init__(self, channels: int, cfg: LGMConfig):
        super().__init__()
        self.nets = nn.ModuleList(ResnetBlock(channels, channels, cfg) for _ in range(2))
        self.attns = nn.ModuleList([_attention_or_identity(cfg.mid_attention, channels, cfg)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.nets[0](x)
        for attn, net in zip(self.attns, self.nets[1:]):
            x = net(attn(x))
        return x


class UpBlock(nn.Module):
    """Each layer concatenates one skip tensor (latest first); the last one comes from the
    previous resolution level, hence its own width ``skip_channels``."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, *,
                 upsample: bool, attention: bool, cfg: LGMConfig):
        super().__init__()
        layers = cfg.layers_per_block + 1
        nets = []
        for i in range(layers):
            cin = in_channels if i == 0 else out_channels
            cskip = skip_channels if i == layers - 1 else out_channels
            nets.append(ResnetBlock(cin + cskip, out_channels, cfg))
        self.nets = nn.ModuleList(nets)
        self.attns = nn.ModuleList(
            _attention_or_identity(attention, out_channels, cfg) for _ in range(layers))
        self.upsample = (nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
                         if upsample else None)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for net, attn in zip(self.nets, self.attns):
            x = attn(net(torch.cat([x, skips.pop()], dim=1)))
        if self.upsample is not None:
            x = self.upsample(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class UNet(nn.Module):
    def __init__(self, cfg: LGMConfig):
        super().__init__()
        down, up = cfg.down_channels, cfg.up_channels
        self.conv_in = nn.Conv2d(cfg.in_channels, down[0], kernel_size=3, padding=1)
        self.down_blocks = nn.ModuleList(
            DownBlock(down[max(i - 1, 0)], down[i], downsample=i < len(down) - 1,
                      attention=cfg.down_attention[i], cfg=cfg)
            for i in range(len(down)))
        self.mid_block = MidBlock(down[-1], cfg)
        self.up_blocks = nn.ModuleList(
            # Up block i joins the skips of down level -(i+2); an asymmetric (shorter) up path
            # clamps at the first level.
            UpBlock(up[max(i - 1, 0)], down[max(-2 - i, -len(down))], up[i],
                    upsample=i < len(up) - 1, attention=cfg.up_attention[i], cfg=cfg)
            for i in range(len(up)))
        self.norm_out = nn.GroupNorm(cfg.norm_groups, up[-1], eps=cfg.norm_eps)
        self.conv_out = nn.Conv2d(up[-1], cfg.out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [BV, 9, H, W] → [BV, 14, h, w]
        x = self.conv_in(x)
        skips = [x]
        for block in self.down_blocks:
            x, block_skips = block(x)
            skips.extend(block_skips)
        x = self.mid_block(x)
        for block in self.up_blocks:
            n = len(block.nets)
            x = block(x, skips[-n:])
            del skips[-n:]
        return self.conv_out(F.silu(self.norm_out(x)))


# ---------------------------------------------------------------------------------- model
def activate_gaussians(raw: torch.Tensor) -> torch.Tensor:
    """[..., 14] raw network output → activated Gaussians in the same channel layout.

    position clamp(−1, 1) · opacity sigmoid · scale 0.1·softplus · rotation unit quaternion
    (w, x, y, z) · rgb 0.5·tanh + 0.5.
    """
    ch = GAUSSIAN_CHANNELS
    return torch.cat([
        raw[..., ch.position].clamp(-1.0, 1.0),
        torch.sigmoid(raw[..., ch.opacity]),
        0.1 * F.softplus(raw[..., ch.scale]),
        F.normalize(raw[..., ch.rotation], dim=-1),
        0.5 * torch.tanh(raw[..., ch.rgb]) + 0.5,
    ], dim=-1)


class LGM(nn.Module):
    """U-Net plus the final 1×1 conv; state-dict keys ``unet.*``, ``conv.weight``,
    ``conv.bias``."""

    def __init__(self, cfg: LGMConfig):
        super().__init__()
        cfg.check()
        self.config = cfg
        self.unet = UNet(cfg)
        self.conv = nn.Conv2d(cfg.out_channels, cfg.out_channels, kernel_size=1)

    def forward_raw(self, views: torch.Tensor) -> torch.Tensor:
        """[B, V, 9, H, W] → pre-activation Gaussians [B, V·(H/s)·(W/s), 14] (float32).

        The input is cast to the weights' dtype; the output is float32 so that the
        activations (sigmoid, normalisation) do not run in half precision.
        """
        cfg = self.config
        if views.ndim != 5 or views.shape[1] != cfg.num_views or views.shape[2] != cfg.in_channels:
            raise GSError(f"LGM input must be [B, {cfg.num_views}, {cfg.in_channels}, H, W], got "
                          f"{list(views.shape)}")
        b, v, c, h, w = views.shape
        if h % cfg.input_multiple or w % cfg.input_multiple:
            raise GSError(f"LGM input size {h}×{w} is not a multiple of {cfg.input_multiple}")
        x = views.reshape(b * v, c, h, w).to(self.conv.weight.dtype)
        x = self.conv(self.unet(x))  # [B·V, 14, h', w']
        hh, ww = x.shape[-2:]
        x = x.reshape(b, v, cfg.out_channels, hh, ww).permute(0, 1, 3, 4, 2)
        return x.reshape(b, v * hh * ww, cfg.out_channels).float()

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        """[B, V, 9, H, W] → activated Gaussians [B, V·(H/s)·(W/s), 14], float32, see
        :data:`GAUSSIAN_CHANNELS` for the channel layout."""
        return activate_gaussians(self.forward_raw(views))


def build_lgm(variant: str = "big", *, device: torch.device | str | None = None,
              dtype: torch.dtype | None = None) -> LGM:
    """A randomly initialised LGM in eval mode.

    Args:
        variant: a key of :data:`LGM_PRESETS` ("big" matches the published weights).
        device: where to allocate; ``torch.device("meta")`` builds shapes only (no memory),
            which is how the weight loader avoids holding two copies. Default: CPU.
        dtype: default :func:`default_dtype_for` the device.
    """
    cfg = lgm_config(variant)
    device = torch.device("cpu" if device is None else device)
    dtype = default_dtype_for(device) if dtype is None else dtype
    with device:
        model = LGM(cfg)
    return model.to(dtype=dtype).eval()
