"""BakedAsset: everything the exporter writes, in the capture frame.

One asset is an LOD chain (LOD0 first) plus one estimated environment light. Each LOD has its own
UV atlas and its own maps, so a distant LOD never pays for LOD0's texture memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..capture.model import Frame
from ..export.neural import NeuralMaterial
from ..mesh import Mesh


@dataclass
class MaterialMaps:
    """One LOD's textures, all (H, W, 3) uint8 in glTF's conventions.

    `captured` is the photo-lit radiance (sRGB) shown by the `captured` unlit variant; the others
    make the default, relightable PBR material. A map that was not baked is None and is simply not
    written (the material falls back to factors).
    """

    captured: np.ndarray  # sRGB photo-lit radiance
    base_color: np.ndarray | None = None  # sRGB albedo
    orm: np.ndarray | None = None  # linear: R occlusion, G roughness, B metallic
    normal: np.ndarray | None = None  # tangent space, (x, y, z) -> (r, g, b) = 0.5 * v + 0.5, +Y = image up
    neural: NeuralMaterial | None = None  # view-dependent captured look (NRC_neural_material)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.captured.shape[1]), int(self.captured.shape[0])


@dataclass
class Lod:
    mesh: Mesh  # capture frame, with uvs (and tangents when a normal map is baked)
    maps: MaterialMaps
    screen_coverage: float = 0.0  # MSFT_screencoverage: shown while the object covers more of the screen


@dataclass
class EnvLight:
    """Estimated environment light in the capture frame.

    `equirect` is (H, 2H, 3) float32 linear radiance, laid out as Blender's (Cycles') equirectangular
    world texture, so that for Z-up captures (capture frame = Blender frame) the map used as a world
    in Blender reproduces the light: pixel column x, row y (row 0 at the top) looks along the
    direction with azimuth phi = 2*pi*(0.5 - (x + 0.5) / W) (phi = atan2(d_y, d_x)) and elevation
    theta = pi*(0.5 - (y + 0.5) / H) (theta = asin(d_z)). `bake.envlight.equirect_directions` is
    that map in code. `sh9` are the 9 real SH coefficients (l <= 2) of the radiance, (9, 3),
    for viewers that want irradiance without the map.
    """

    equirect: np.ndarray
    sh9: np.ndarray


@dataclass
class BakedAsset:
    lods: list[Lod]
    up_axis: str = "z"  # capture frame's up axis; the exporter turns it into glTF's +Y
    cameras: list[Frame] = field(default_factory=list)  # exported under a `capture_cameras` node
    light: EnvLight | None = None
    # Goes to asset.extras.nrconvert (version, metrics, transform are added by the exporter).
    metadata: dict = field(default_factory=dict)

    @property
    def mesh(self) -> Mesh:
        """LOD0's mesh: the one metrics and reports measure."""
        return self.lods[0].mesh

    @property
    def captured(self) -> np.ndarray:
        """LOD0's photo-lit texture."""
        return self.lods[0].maps.captured
