"""pix2pix networks (Isola et al., CVPR 2017) for the `cgan` backend: a U-Net generator that turns a
sketch into an "imaginary" photo and a PatchGAN discriminator conditioned on the sketch.

Normalisation is InstanceNorm (no running statistics), so train and eval mode differ only in
dropout. Dropout in the inner decoder layers is the generator's noise (pix2pix has no z); serving
runs in eval mode on purpose: dropout off, so one sketch always gives the same imaginary photo
and the same ranking. (pix2pix's own test code keeps dropout and batch-norm in training mode.)
"""
from __future__ import annotations

import math

import torch
from torch import nn


def unet_depth(resolution: int) -> int:
    """Downsamplings that take the image to 1x1 at the bottleneck: 64 px -> 6, 256 px -> 8."""
    depth = int(math.log2(resolution))
    if 2 ** depth != resolution or depth < 3:
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    return depth


class Down(nn.Module):
    """Conv 4x4 stride 2 (halves H, W), optional InstanceNorm, LeakyReLU applied before (pix2pix order)."""

    def __init__(self, c_in: int, c_out: int, norm: bool, act: bool):
        super().__init__()
        self.act = nn.LeakyReLU(0.2) if act else nn.Identity()
        self.conv = nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not norm)
        self.norm = nn.InstanceNorm2d(c_out, affine=True) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(self.act(x)))


class Up(nn.Module):
    """ReLU, transposed conv 4x4 stride 2 (doubles H, W), InstanceNorm, optional dropout (the noise)."""

    def __init__(self, c_in: int, c_out: int, dropout: float):
        super().__init__()
        self.act = nn.ReLU()
        self.conv = nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False)
        self.norm = nn.InstanceNorm2d(c_out, affine=True)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.norm(self.conv(self.act(x))))


class ResizeUp(nn.Module):
    """ReLU, nearest-neighbour 2x upsampling then a 3x3 conv, InstanceNorm, optional dropout.

    Resize-then-convolve (Odena et al., Distill 2016): every output pixel sees the same number of
    kernel taps, so there is no checkerboard pattern as with stride-2 transposed convolutions."""

    def __init__(self, c_in: int, c_out: int, dropout: float, norm: bool = True):
        super().__init__()
        self.act = nn.ReLU()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv2d(c_in, c_out, 3, 1, 1, bias=not norm, padding_mode="replicate")
        self.norm = nn.InstanceNorm2d(c_out, affine=True) if norm else nn.Identity()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.norm(self.conv(self.up(self.act(x)))))


class UNetGenerator(nn.Module):
    """Sketch (B, 3, R, R) in [-1, 1] -> imaginary photo (B, 3, R, R) in [-1, 1] (Tanh).

    `depth` downsamplings (log2 R, so the bottleneck is 1x1) with skip connections; channels
    double from `ngf` up to `ngf * max_mult`; the `n_dropout` innermost decoder layers use dropout.
    """

    def __init__(self, resolution: int = 64, ngf: int = 32, max_mult: int = 8, n_dropout: int = 2,
                 dropout: float = 0.5, in_ch: int = 3, out_ch: int = 3, upsample: str = "transpose",
                 cond_dim: int = 0, cond_emb: int = 64):
        super().__init__()
        if upsample not in ("transpose", "resize"):
            raise ValueError(f"upsample must be 'transpose' or 'resize', got {upsample!r}")
        self.cond_dim = cond_dim
        depth = unet_depth(resolution)
        chans = [min(ngf * 2 ** i, ngf * max_mult) for i in range(depth)]    # encoder outputs
        self.downs = nn.ModuleList()
        for i, c in enumerate(chans):
            c_in = in_ch if i == 0 else chans[i - 1]
            # outermost: no act before, no norm; innermost (1x1): no norm (InstanceNorm of 1 pixel is 0)
            self.downs.append(Down(c_in, c, norm=0 < i < depth - 1, act=i > 0))
        # class conditioning: a class posterior (B, cond_dim) -> an embedding joined to the bottleneck
        self.cond = nn.Linear(cond_dim, cond_emb) if cond_dim else None
        up = Up if upsample == "transpose" else ResizeUp
        self.ups = nn.ModuleList()
        for j, i in enumerate(reversed(range(1, depth))):                     # decoder to level i-1
            c_in = (chans[i] + (cond_emb if cond_dim else 0)) if j == 0 else 2 * chans[i]
            self.ups.append(up(c_in, chans[i - 1], dropout if j < n_dropout else 0.0))
        last = (nn.ConvTranspose2d(2 * chans[0], out_ch, 4, 2, 1) if upsample == "transpose" else
                nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                              nn.Conv2d(2 * chans[0], out_ch, 3, 1, 1, padding_mode="replicate")))
        self.out = nn.Sequential(nn.ReLU(), last, nn.Tanh())

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        skips = []
        for d in self.downs:
            x = d(x)
            skips.append(x)                                   # (B, chans[i], R/2^(i+1), ...)
        x = skips.pop()                                       # (B, C, 1, 1) bottleneck
        if self.cond is not None:
            if cond is None:
                raise ValueError("this generator is class-conditioned: pass the class posterior `cond`")
            x = torch.cat([x, self.cond(cond)[:, :, None, None]], dim=1)   # (B, C + cond_emb, 1, 1)
        for u in self.ups:
            x = torch.cat([u(x), skips.pop()], dim=1)         # (B, 2*C_i, ...)
        return self.out(x)                                    # (B, 3, R, R)


class PatchDiscriminator(nn.Module):
    """Conditioned PatchGAN: (sketch, photo) -> (B, 1, h, w) real/fake logits per overlapping patch.

    `n_layers` strided convs; 2 at 64 px sees 34x34-pixel patches (pix2pix uses 3 at 256 px: 70x70).
    """

    def __init__(self, ndf: int = 64, n_layers: int = 2, in_ch: int = 6):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = ndf
        for n in range(1, n_layers + 1):
            c_next = ndf * min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(c, c_next, 4, stride, 1, bias=False),
                       nn.InstanceNorm2d(c_next, affine=True), nn.LeakyReLU(0.2)]
            c = c_next
        layers.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, sketch: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([sketch, photo], dim=1))   # (B, 1, h, w)

    def features(self, sketch: torch.Tensor, photo: torch.Tensor) -> list[torch.Tensor]:
        """Every activation after a LeakyReLU, then the logits: for feature matching (pix2pixHD)."""
        x, out = torch.cat([sketch, photo], dim=1), []
        for layer in self.net:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                out.append(x)
        return out + [x]


class MultiScaleDiscriminator(nn.Module):
    """PatchGANs on the pair at full, 1/2, ... resolution (pix2pixHD): the coarse one judges the
    whole object and its ground, the fine one texture. `features` gives each scale's activations."""

    def __init__(self, ndf: int = 64, n_layers: int = 2, n_scales: int = 2, in_ch: int = 6):
        super().__init__()
        self.ds = nn.ModuleList(PatchDiscriminator(ndf, n_layers, in_ch) for _ in range(n_scales))

    def features(self, sketch: torch.Tensor, photo: torch.Tensor) -> list[list[torch.Tensor]]:
        out = []
        for i, d in enumerate(self.ds):
            if i:
                sketch = nn.functional.avg_pool2d(sketch, 3, 2, 1, count_include_pad=False)
                photo = nn.functional.avg_pool2d(photo, 3, 2, 1, count_include_pad=False)
            out.append(d.features(sketch, photo))
        return out

    def forward(self, sketch: torch.Tensor, photo: torch.Tensor) -> list[torch.Tensor]:
        return [f[-1] for f in self.features(sketch, photo)]   # logits per scale


def init_weights(m: nn.Module) -> None:
    """pix2pix init: conv weights N(0, 0.02), norm scales N(1, 0.02)."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.InstanceNorm2d) and m.affine:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)
