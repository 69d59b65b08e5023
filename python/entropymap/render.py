"""Pictures: the CT in grey with an entropy map fused over it.

Matplotlib is imported lazily and used through its object API with the Agg canvas, so
rendering never changes the user's global backend or pyplot state.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .io import Geometry

__all__ = ["WINDOWS", "axial_display", "fusion_figure", "tumor_center_slice", "window"]

#: CT display windows as (width, level) in HU.
WINDOWS = {
    "liver": (150.0, 90.0),
    "abdomen": (400.0, 40.0),
    "soft_tissue": (350.0, 50.0),
    "lung": (1500.0, -600.0),
    "bone": (1800.0, 400.0),
}


def window(values: np.ndarray, width: float, level: float) -> np.ndarray:
    """Map intensities to [0, 1] grey levels with a display window (width, level) in HU."""
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    lo = level - width / 2.0
    return np.clip((np.asarray(values, dtype=np.float64) - lo) / width, 0.0, 1.0)


def axial_display(geometry: "Geometry") -> tuple[bool, bool, float]:
    """How to show an axial slice (array axes y, x) in the radiological convention.

    Returns ``(flip_rows, flip_cols, aspect)``: patient right is on the viewer's left
    (columns run toward patient left, +x in LPS) and anterior is up (rows run toward
    posterior, +y in LPS); ``aspect`` is the pixel height/width ratio from the spacing.
    An array axis is flipped when it runs against its display direction (the sign of
    its physical x or y component). Assumes an axial acquisition (array z along
    the patient's long axis).
    """
    d = np.asarray(geometry.direction, dtype=float)  # column j: ITK axis j (array x, y, z)
    flip_cols = d[0, 0] < 0  # array x should run toward +x (patient left)
    flip_rows = d[1, 1] < 0  # array y should run toward +y (posterior)
    sz, sy, sx = geometry.spacing
    return bool(flip_rows), bool(flip_cols), float(sy / sx)


def tumor_center_slice(tumor: np.ndarray) -> int:
    """Axial index through the centre of the largest connected tumour component."""
    from scipy import ndimage

    lab, n = ndimage.label(tumor)
    if n == 0:
        raise ValueError("the tumour mask is empty")
    sizes = ndimage.sum_labels(tumor, lab, index=np.arange(1, n + 1))
    biggest = int(np.argmax(sizes)) + 1
    zc = ndimage.center_of_mass(lab == biggest)[0]
    return int(round(zc))


def fusion_figure(
    path: Path,
    ct: np.ndarray,
    overlay: np.ndarray,
    geometry: "Geometry",
    z: int,
    *,
    normalized: bool = True,
    ct_window: tuple[float, float] = WINDOWS["abdomen"],
    cmap: Optional[str] = None,
    value_range: Optional[tuple[float, float]] = None,
    thresholds: Sequence[float] = (),
    opacity: float = 0.6,
    contours: Sequence[tuple[np.ndarray, str, str]] = (),
    title: str = "",
    dpi: int = 150,
) -> Path:
    """Save the axial slice ``z`` of the CT with ``overlay`` fused over it.

    NaN voxels of the overlay are fully transparent (the CT shows through). For a
    normalised map the palette is diverging and centred on 1.0; for a raw map it is
    perceptually uniform. ``contours`` are ``(mask, colour, label)`` triples; the colour
    bar carries the unit and the ``thresholds`` as lines. The format follows the suffix.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize, TwoSlopeNorm
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    if not 0 <= z < ct.shape[0]:
        raise ValueError(f"slice {z} is outside the volume (0 .. {ct.shape[0] - 1})")
    flip_rows, flip_cols, aspect = axial_display(geometry)

    def view(a: np.ndarray) -> np.ndarray:
        s = a[z]
        if flip_rows:
            s = s[::-1, :]
        if flip_cols:
            s = s[:, ::-1]
        return s

    grey = window(view(ct), *ct_window)
    ov = view(overlay).astype(np.float64)
    finite = ov[np.isfinite(ov)]
    if normalized:
        cmap = cmap or "RdBu_r"
        half = 0.5
        if value_range is None:
            value_range = (1.0 - half, 1.0 + half)
        norm = TwoSlopeNorm(vcenter=1.0, vmin=value_range[0], vmax=value_range[1])
        unit = "local entropy (x reference mean)"
    else:
        cmap = cmap or "viridis"
        if value_range is None:
            value_range = (float(np.percentile(finite, 1)), float(np.percentile(finite, 99))) if finite.size else (0, 1)
        norm = Normalize(*value_range)
        unit = "local entropy (nats)"

    fig = Figure(figsize=(7.0, 6.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(grey, cmap="gray", vmin=0, vmax=1, aspect=aspect, interpolation="nearest")
    im = ax.imshow(np.ma.masked_invalid(ov), cmap=cmap, norm=norm, alpha=opacity, aspect=aspect,
                   interpolation="nearest")
    handles = []
    for mask, colour, label in contours:
        m = view(mask).astype(float)
        if m.any():
            ax.contour(m, levels=[0.5], colors=[colour], linewidths=1.2)
            handles.append(Line2D([], [], color=colour, label=label))
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.6)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"axial slice {z}", fontsize=10)
    ax.text(0.01, 0.5, "R", transform=ax.transAxes, color="white", fontsize=10, va="center")
    ax.text(0.97, 0.5, "L", transform=ax.transAxes, color="white", fontsize=10, va="center")
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.solids.set_alpha(1.0)
    cb.set_label(unit)
    for t in thresholds:
        if value_range[0] <= t <= value_range[1]:
            cb.ax.axhline(t, color="black", linewidth=1.0, linestyle="--")
    path = Path(path)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
