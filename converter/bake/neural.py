"""Neural material distillation: 8 quantised feature channels per texel + a tiny MLP, fitted
through the rasterizer to the photos (and to renders of the field from cameras between them).

Why distil instead of baking: a texture holds one colour per texel, so gloss and view-dependent
colour are lost; the field has them. The decoder sees the view direction, so it can put them back
at real-time cost. Features are fitted at the resolution the observations support (as the
captured texture is, see `texture.fit_to_photos`): a 1024² feature atlas fitted to 200 px photos
copies each view's noise into texels only one view saw.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..capture.images import load_frame_image
from ..capture.model import Frame
from ..export.neural import SH_C0, SH_C1, SH_C2, N_FEATURES, Layer, NeuralMaterial, mlp_input_size
from ..mesh import Mesh
from ..render.raster import photo_object_pixels, rasterize_view
from ..render.volume import render_chunked
from .footprint import PixelSamples, mesh_view_inputs, pixel_colour
from .texture import interpolate, pad_texture, to_uint8_srgb

HIDDEN = (12, 12)  # 21 -> 12 -> 12 -> 3 with sh2_reflected_nv: 965 FLOP per pixel (NeuralMaterial.flops_per_pixel)
# With an environment the MLP reads 9 values and gives 6, so one wide layer fits the budget that
# two narrow ones took: 9 -> 28 -> 6 is 972 FLOP (12 x 12: 776). Held out on LOD0's samples it
# gained +0.30 dB on the specular suzanne and +0.21 on the glossy torus knot (run-to-run ±0.1;
# bench/RESULTS.md, sixteenth session): width, not depth, is what the small decoder lacked.
ENV_HIDDEN = (28,)


# `tv` is tuned for features of this side (the benchmark captures' LOD0). Finite differences of a
# smooth signal shrink with the texel, so above it the weight grows with the square of the side,
# keeping the same smoothness per unit of atlas: a 1024² fit otherwise keeps each texel's noise
# (and its PNGs grow past the format's 4 MB budget: bench/RESULTS.md, eighteenth session). Below
# it the weight stays: coarse texels are smooth by their size, and the small fits were tuned so.
TV_SIZE = 256


def default_hidden(env_width: int) -> tuple[int, ...]:
    """The MLP's hidden widths nrconvert writes: one layer of 28 with an environment, else 12 x 12."""
    return ENV_HIDDEN if env_width else HIDDEN


@dataclass
class ViewSamples:
    """Object pixels of some views: where they land in the atlas, how they were seen, their colour."""

    uv: np.ndarray  # (N, 2) float32, glTF convention
    view: np.ndarray  # (N, 3) float32 unit direction camera -> surface, in the asset (object) frame
    # (mirrored for a reflected encoding); sh2_reflected_nv appends n.v and the unit normal: (N, 7)
    rgb: np.ndarray  # (N, 3) float32 sRGB


def view_samples(mesh: Mesh, frame: Frame, rotation: np.ndarray, downscale: int = 1,
                 image: tuple[np.ndarray, np.ndarray | None] | None = None, encoding: str = "sh2") -> ViewSamples:
    """Samples of one camera: its photo's object pixels the mesh covers, or those of `image`
    (rgb, alpha) when given (a field render for a camera without a photo). With a reflected
    `encoding` the sample's direction is already mirrored about the normal the GLB will store."""
    frags = rasterize_view(frame, mesh.vertices, mesh.faces, downscale, cull_backfaces=True)
    rgb, alpha = image if image is not None else load_frame_image(frame, downscale)
    hit = photo_object_pixels(frags.tri, alpha)
    pos = interpolate(mesh.vertices, mesh.faces, frags)[hit]
    uv = interpolate(mesh.uvs, mesh.faces, frags)[hit]
    view = mesh_view_inputs(mesh, frags, hit, pos - frame.c2w[:3, 3], encoding, rotation)
    return ViewSamples(uv.astype(np.float32), view.astype(np.float32), rgb[hit].astype(np.float32))


@torch.no_grad()
def field_image(tf, mesh: Mesh, frame: Frame, downscale: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The field's colour (H, W, 3) and a mask where `mesh` is seen: each ray is marched from just
    in front of the mesh surface, which skips the empty space a full render pays for."""
    frags = rasterize_view(frame, mesh.vertices, mesh.faces, downscale, cull_backfaces=True)
    hit = frags.tri >= 0
    pos = interpolate(mesh.vertices, mesh.faces, frags)[hit]
    d = pos - frame.c2w[:3, 3]
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    dev = tf.field.log_beta.device
    o = torch.from_numpy((pos - d * (8 * tf.dt)).astype(np.float32)).to(dev)
    out = render_chunked(tf.field, tf.occupancy, o, torch.from_numpy(d.astype(np.float32)).to(dev), tf.box,
                         tf.dt, max_distance=24 * tf.dt)
    img = np.zeros(hit.shape + (3,), np.float32)
    img[hit] = (out.rgb / out.opacity.clamp(min=1e-3)[:, None]).clamp(0, 1).cpu().numpy()
    return img, hit.astype(np.float32)


def concat(parts: list[ViewSamples]) -> ViewSamples:
    return ViewSamples(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("uv", "view", "rgb")))


def between_cameras(frames: list[Frame], n: int, seed: int = 0) -> list[Frame]:
    """`n` cameras halfway between random pairs of neighbouring training cameras (position lerped,
    looking at the same point the pair looks at), so the field supervises views no photo took."""
    if n <= 0 or len(frames) < 2:
        return []
    rng = np.random.default_rng(seed)
    centres = np.stack([f.c2w[:3, 3] for f in frames])
    out = []
    for i in rng.choice(len(frames), size=n, replace=n > len(frames)):
        dist = np.linalg.norm(centres - centres[i], axis=1)
        j = int(np.argsort(dist)[1 + rng.integers(0, min(3, len(frames) - 1))])
        out.append(_midway(frames[i], frames[j]))
    return out


def _midway(a: Frame, b: Frame) -> Frame:
    target = _look_point(a) * 0.5 + _look_point(b) * 0.5
    centre = (a.c2w[:3, 3] + b.c2w[:3, 3]) / 2
    back = centre - target
    back /= np.linalg.norm(back)
    up_hint = a.c2w[:3, 1] + b.c2w[:3, 1]
    right = np.cross(up_hint, back)
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, np.cross(back, right), back, centre
    return Frame(a.image_path, c2w, a.fx, a.fy, a.cx, a.cy, a.width, a.height, split="synthetic")


def _look_point(f: Frame) -> np.ndarray:
    """Closest point to the origin along the camera's optical axis (the object sits near it)."""
    o, d = f.c2w[:3, 3], -f.c2w[:3, 2]
    return o - d * float(o @ d)


def feature_size(n_samples: int, coverage: float, limit: int, per_texel: float = 24.0) -> int:
    """The largest power-of-two feature resolution that still gets at least `per_texel`
    observations per covered texel (3 per feature value): fewer, and texels copy one view's noise."""
    texels = n_samples / per_texel / max(coverage, 1e-3)
    return int(min(limit, 2 ** int(np.floor(np.log2(max(np.sqrt(texels), 32))))))


def environment_size(n_samples: int, limit: int, per_texel: float = 24.0) -> int:
    """The environment's width: the largest power of two up to `limit` whose W x W/2 texels get
    at least `per_texel` samples each (8 at the least; 0 when `limit` is 0). Like the features,
    an environment finer than its evidence copies single views: on the tiny 16-photo suzanne
    (10.6 k samples) 128 wide held out 14.8 dB, 64 18.3, 32 19.2, 16 19.4 (bench/RESULTS.md)."""
    width = limit
    while width > 8 and n_samples < per_texel * width * width / 2:
        width //= 2
    return width


def sh2_torch(d: torch.Tensor) -> torch.Tensor:
    x, y, z = d.unbind(-1)
    return torch.stack([torch.full_like(x, SH_C0), -SH_C1 * y, SH_C1 * z, -SH_C1 * x,
                        SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2 * z * z - x * x - y * y),
                        SH_C2[3] * x * z, SH_C2[4] * (x * x - y * y)], -1)


def quantise_8bit(t: torch.Tensor) -> torch.Tensor:
    """Values on the 8-bit grid in [0, 1], with straight-through gradients: the file holds what was trained."""
    t = t.clamp(0, 1)
    return t + (torch.round(t * 255) / 255 - t).detach()


def equirect_grid(d: torch.Tensor, width: int) -> torch.Tensor:
    """grid_sample coordinates of `export.neural.equirect_uv` in an environment padded with one
    wrapped column on each side (so bilinear lookups repeat in u)."""
    u = torch.atan2(d[:, 0], -d[:, 2]) / (2 * math.pi) + 0.5
    v = torch.acos(d[:, 1].clamp(-1, 1)) / math.pi
    return torch.stack([(u * width + 1) / (width + 2) * 2 - 1, v * 2 - 1], -1)[None, :, None, :]


class Decoder(torch.nn.Module):
    """The trainable twin of `export.neural.decode`: same layout, same quantisation; with
    `env_width` a learnt environment (env_width x env_width / 2, 8-bit) that the last layer's six
    outputs (a, b) modulate: colour = sigmoid(a + b * env(mirror))."""

    def __init__(self, size: int, hidden: tuple[int, ...] = HIDDEN, seed: int = 0, encoding: str = "sh2",
                 env_width: int = 0) -> None:
        super().__init__()
        self.encoding = encoding  # the samples' directions are already reflected when it says so
        g = torch.Generator().manual_seed(seed)
        self.features = torch.nn.Parameter(0.5 + 0.05 * torch.randn(1, N_FEATURES, size, size, generator=g))
        self.scale = torch.nn.Parameter(torch.ones(N_FEATURES))
        self.offset = torch.nn.Parameter(torch.zeros(N_FEATURES))
        self.env = None
        if env_width:
            g = torch.Generator().manual_seed(seed + 1)
            self.env = torch.nn.Parameter(0.5 + 0.05 * torch.randn(1, 3, env_width // 2, env_width, generator=g))
            self.env_scale = torch.nn.Parameter(torch.full((3,), 4.0))
            self.env_offset = torch.nn.Parameter(torch.full((3,), -2.0))
        dims = (mlp_input_size(encoding),) + tuple(hidden) + (6 if env_width else 3,)
        torch.manual_seed(seed)
        self.mlp = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def head_parameters(self) -> list[torch.nn.Parameter]:
        """What a lower LOD shares with LOD0: everything but its own features."""
        extra = [] if self.env is None else [self.env, self.env_scale, self.env_offset]
        return [*self.mlp.parameters(), self.scale, self.offset, *extra]

    def environment(self, mirrored: torch.Tensor) -> torch.Tensor:
        """(N, 3) dequantised environment along unit mirrored directions (the format's lookup)."""
        e = quantise_8bit(self.env)
        e = torch.cat([e[..., -1:], e, e[..., :1]], -1)
        s = F.grid_sample(e, equirect_grid(mirrored, self.env.shape[-1]), mode="bilinear", padding_mode="border",
                          align_corners=False)
        return s[0, :, :, 0].t() * self.env_scale + self.env_offset

    def quantised(self) -> torch.Tensor:
        return quantise_8bit(self.features)

    def sample_features(self, uv: torch.Tensor, feats: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 8) dequantised features, bilinear at `uv`, clamped to the edge (the format's lookup)."""
        feats = self.quantised() if feats is None else feats
        grid = (uv * 2 - 1)[None, :, None, :]
        f = F.grid_sample(feats, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return f[0, :, :, 0].t() * self.scale + self.offset

    def forward(self, uv: torch.Tensor, view: torch.Tensor, feats: torch.Tensor | None = None) -> torch.Tensor:
        extra = [view[:, 3:]] if self.encoding == "nv" else [sh2_torch(view[:, :3]), view[:, 3:]]
        x = torch.cat([self.sample_features(uv, feats), *extra], -1)
        for layer in self.mlp[:-1]:
            x = torch.relu(layer(x))
        x = self.mlp[-1](x)
        if self.env is None:
            return torch.sigmoid(x)
        return torch.sigmoid(x[:, :3] + x[:, 3:] * self.environment(view[:, :3]))

    def export(self, observed: np.ndarray) -> NeuralMaterial:
        """The quantised features (padded from observed texels into the rest) and the MLP."""
        with torch.no_grad():
            f = self.quantised()[0].permute(1, 2, 0).numpy()
        feats = to_uint8_srgb(pad_texture(f, observed))  # the same 8-bit grid quantise_8bit trains on
        last = "sigmoid" if self.env is None else "linear"
        layers = [Layer(m.weight.detach().numpy().astype(np.float32), m.bias.detach().numpy().astype(np.float32),
                        "relu" if i < len(self.mlp) - 1 else last) for i, m in enumerate(self.mlp)]
        mat = NeuralMaterial(feats, _f32(self.scale), _f32(self.offset), layers, self.encoding)
        if self.env is not None:
            with torch.no_grad():
                mat.environment = to_uint8_srgb(quantise_8bit(self.env)[0].permute(1, 2, 0).numpy())
            mat.env_scale, mat.env_offset = _f32(self.env_scale), _f32(self.env_offset)
        return mat


def _f32(p: torch.Tensor) -> np.ndarray:
    return p.detach().numpy().astype(np.float32)


@dataclass
class Distilled:
    material: NeuralMaterial
    decoder: Decoder  # kept so lower LODs can reuse its MLP
    history: list[dict]


def distill(samples: ViewSamples, size: int, steps: int, *, shared: Decoder | None = None,
            pixels: PixelSamples | None = None, batch: int = 16384, lr: float = 0.03, tv: float = 1e-2,
            seed: int = 0, mlp_lr: float = 1 / 3,
            encoding: str = "sh2", hidden: tuple[int, ...] | None = None, env_width: int = 0, env_tv: float = 1e-3,
            progress: Callable[[int, int], None] | None = None, device: str | torch.device = "cpu") -> Distilled:
    """Fit features (and, unless `shared` gives a decoder whose MLP and environment to keep, the
    MLP and environment) to samples, and to `pixels` (photo pixels as footprints,
    `bake.footprint`) when given.

    MSE in sRGB (the photos' space, where the error we report is measured); total variation on
    the features spreads colour into texels few samples hit (and, lighter, on the environment
    into directions few mirrors saw); cosine-decayed Adam. Fitted on `device` (the field's), the
    decoder handed back on the CPU.
    """
    if shared is not None:
        encoding, env_width = shared.encoding, 0 if shared.env is None else shared.env.shape[-1]
        hidden = tuple(layer.out_features for layer in shared.mlp[:-1])
    hidden = default_hidden(env_width) if hidden is None else hidden
    dec = Decoder(size, hidden, seed=seed, encoding=encoding, env_width=env_width).to(device)
    texels = [dec.features] + ([] if dec.env is None else [dec.env])
    head = [p for p in dec.head_parameters() if p is not dec.env]
    groups = [{"params": [dec.features], "lr": lr}]
    if shared is not None:
        for mine, theirs in zip(dec.head_parameters(), shared.head_parameters()):
            mine.data.copy_(theirs.data)
            mine.requires_grad_(False)
    else:
        groups = [{"params": texels, "lr": lr}, {"params": head, "lr": lr * mlp_lr}]

    def prior() -> torch.Tensor:
        out = tv * max(1.0, size / TV_SIZE) ** 2 * _tv(dec.features)
        return out if dec.env is None or shared is not None else out + env_tv * _tv(dec.env)

    history = fit(dec, groups, samples, steps, batch=batch, prior=prior, seed=seed, progress=progress, pixels=pixels)
    dec = dec.cpu()
    uv = samples.uv if pixels is None else np.concatenate([samples.uv, pixels.uv[pixels.hit > 0]])
    return Distilled(dec.export(observed_texels(uv, size)), dec, history)


def fit(dec: torch.nn.Module, groups: list[dict], samples: ViewSamples, steps: int, *, batch: int,
        prior: Callable[[], torch.Tensor], seed: int = 0,
        progress: Callable[[int, int], None] | None = None, pixels: PixelSamples | None = None) -> list[dict]:
    """Minibatch MSE of `dec(uv, view)` against the samples (and of `pixel_colour` against the
    `pixels`, the batch shared in proportion to their counts) plus `prior()`, Adam over `groups`
    with each group's rate cosine-decayed to 5 %; returns the MSE every 100 steps. Runs where
    `dec`'s parameters are; the batches are drawn on the CPU, the same with or without a GPU."""
    opt = torch.optim.Adam(groups, betas=(0.9, 0.99), fused=True)
    base = [g["lr"] for g in groups]
    device = next(dec.parameters()).device
    sets = [_on(device, samples, ("uv", "view", "rgb"))]
    if pixels is not None and len(pixels.rgb):
        sets.append(_on(device, pixels, ("uv", "view", "hit", "rgb")))
    counts = [len(t[-1]) for t in sets]
    sizes = [max(1, round(min(batch, sum(counts)) * n / sum(counts))) if n else 0 for n in counts]
    g = torch.Generator().manual_seed(seed)
    history = []
    for step in range(steps):
        for grp, b in zip(opt.param_groups, base):
            grp["lr"] = b * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * step / steps)))
        sse = 0.0
        for tensors, n, size in zip(sets, counts, sizes):
            if size:
                idx = torch.randint(0, n, (size,), generator=g).to(device)
                picked = [t[idx] for t in tensors]
                pred = dec(*picked[:2]) if len(picked) == 3 else pixel_colour(dec, *picked[:3])
                sse = sse + F.mse_loss(pred, picked[-1], reduction="sum")
        loss = sse / (3 * sum(sizes))
        opt.zero_grad(set_to_none=True)
        (loss + prior()).backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            history.append({"step": step, "mse": float(loss.detach())})
            if progress:
                progress(step + 1, steps)
    return history


def _on(device, data, keys: tuple[str, ...]) -> list[torch.Tensor]:
    return [torch.from_numpy(getattr(data, k)).to(device) for k in keys]


def _tv(f: torch.Tensor) -> torch.Tensor:
    return ((f[..., 1:, :] - f[..., :-1, :]) ** 2).mean() + ((f[..., :, 1:] - f[..., :, :-1]) ** 2).mean()


def observed_texels(uv: np.ndarray, size: int) -> np.ndarray:
    """(size, size) bool: texels whose bilinear footprint some sample touched."""
    x = np.clip(np.floor(uv[:, 0] * size - 0.5), 0, size - 1).astype(np.int64)
    y = np.clip(np.floor(uv[:, 1] * size - 0.5), 0, size - 1).astype(np.int64)
    seen = np.zeros((size, size), bool)
    for dy in (0, 1):
        for dx in (0, 1):
            seen[np.minimum(y + dy, size - 1), np.minimum(x + dx, size - 1)] = True
    return seen
