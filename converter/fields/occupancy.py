"""Occupancy grid over the unit box: which cells may hold matter, so marching skips the rest."""
from __future__ import annotations

import torch


class OccupancyGrid:
    def __init__(self, res: int, initial: torch.Tensor | None = None):
        self.res = res
        self.mask = torch.ones((res, res, res), dtype=torch.bool) if initial is None else initial.clone()
        self.density = torch.zeros((res, res, res))
        self.updates = 0

    def lookup(self, x: torch.Tensor) -> torch.Tensor:
        """Occupied? for unit-box points (N, 3)."""
        idx = (x * self.res).long().clamp(0, self.res - 1)
        return self.mask[idx[:, 0], idx[:, 1], idx[:, 2]]

    def cell_centres(self, cells: torch.Tensor, jitter: bool = True) -> torch.Tensor:
        offset = torch.rand(cells.shape[0], 3) if jitter else torch.full((cells.shape[0], 3), 0.5)
        return (cells.float() + offset) / self.res

    @torch.no_grad()
    def update(self, density_fn, threshold: float, decay: float = 0.95, explore: float = 0.05) -> None:
        """Re-evaluate occupied cells plus a random share of empty ones (EMA, instant-ngp style)."""
        occupied = self.mask.nonzero()
        empty = (~self.mask).nonzero()
        if self.updates == 0:
            decay, explore = 0.0, 0.0  # the first pass replaces the initial guess outright
        self.updates += 1
        if len(empty):
            empty = empty[torch.randperm(len(empty))[: int(explore * len(empty))]]
        cells = torch.cat([occupied, empty])
        sigma = torch.cat([density_fn(self.cell_centres(c)) for c in cells.split(1 << 16)])
        i, j, k = cells.unbind(-1)
        self.density[i, j, k] = torch.maximum(self.density[i, j, k] * decay, sigma)
        self.mask = self.density > threshold
        if not self.mask.any():  # never let training lock itself out of the whole box
            self.mask = self.density >= self.density.max()
