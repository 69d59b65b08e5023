"""The bundled sample case: a liver CT crop with liver and tumor labels (LiTS 117).

Its provenance, licence (CC BY-SA 4.0 for the underlying LiTS data) and the
citations it needs are in ``entropymap/data/lits_117/NOTICE.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["SampleCase", "sample_case"]


@dataclass(frozen=True)
class SampleCase:
    """Paths and label values of the bundled sample.

    Attributes
    ----------
    image : Path
        Portal-venous CT in HU (float, multiples of 1/8 HU), 128^3.
    labels : Path
        Label image on the same grid: 1 = liver parenchyma, 2 = tumor.
    tumor_label : int
        Label of the tumor (2).
    liver_labels : tuple of int
        Labels that make up the whole liver (1 and 2).
    notice : Path
        Provenance, licence and citations.
    """

    image: Path
    labels: Path
    tumor_label: int
    liver_labels: tuple[int, ...]
    notice: Path


def sample_case() -> SampleCase:
    """Locate the bundled sample case.

    Examples
    --------
    >>> case = sample_case()
    >>> case.image.name, case.tumor_label
    ('img_117.nii.gz', 2)
    """
    folder = Path(str(resources.files("entropymap") / "data" / "lits_117"))
    image = folder / "img_117.nii.gz"
    if not image.exists():  # pragma: no cover - a broken installation
        raise FileNotFoundError(f"the bundled sample is missing from the installation ({folder})")
    return SampleCase(image, folder / "lab_117.nii.gz", 2, (1, 2), folder / "NOTICE.md")
