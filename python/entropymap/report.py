"""The report of one case: a single self-contained HTML file a clinician opens from disk.

It holds the parameters (from ``run.json``), the statistics table, the figures and a slice
viewer (scroll through axial, coronal or sagittal slices, slide the fusion opacity). No
network is needed or used: images are PNG data URIs, the style sheet and the small
vanilla script are inline.

The viewer gets each volume once, as 8-bit slices tiled into a grey PNG (the browser
decodes it; the script reads the bytes back through a canvas): the CT after the window,
the map as a palette index (0 = no colour) and the outlines as bits. It composes a slice
with the same formula as :meth:`entropymap.render.Scene.image`. The viewer's state can be
set from the address, e.g. ``report.html#view=coronal&slice=40&opacity=0.3``, which also
lets a test drive it in a headless browser.
"""

from __future__ import annotations

import base64
import html
import io as _bytes_io
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

import numpy as np

from .render import EDGE_LETTERS, INK_COLOURS, VIEWS, Scene, _window_name, _write_atomic, window

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["REPORT_NAME", "viewer_volumes", "write_report"]

REPORT_NAME = "report.html"
#: CSS pixels of the viewer's longest physical side.
_VIEWER_PX = 560
#: Context kept around the liver when a large case is cropped for the viewer, mm.
_CROP_MARGIN_MM = 20.0

_CAPTIONS = {
    "fusion": "The map fused over the CT, {where}.",
    "triptych": "The same slice as CT, as map alone and fused.",
    "orthogonal": "Axial, coronal and sagittal slices through the same point, at one scale.",
    "montage": "Slices spread over the largest tumor component.",
    "histogram": "Local entropy in the tumor and the reference region (dotted lines: means).",
    "patterns": "Rim and core of the largest lesion, and the mean normalised entropy in 1 mm bands across "
                "the tumor boundary (inside negative).",
}
_BITS = {"tumor": 1, "reference": 2}


def viewer_volumes(scene: Scene) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The 8-bit volumes the viewer shows, on the display grid, and how they were made.

    Returns
    -------
    volumes : dict
        ``"ct"`` (grey 0..255 after the window), ``"map"`` (0 = no colour, else 1 +
        the palette position scaled to 0..254, so 1.0 of a normalised map is index 128,
        the palette's centre) and, with outlines, ``"masks"`` (bit 1 tumor, 2 reference).
    info : dict
        ``box`` (the display-grid slices kept) and ``stride`` per display axis, and a
        sentence saying what was kept.
    """
    o = scene.orientation
    budget = scene.options.viewer_max_voxels
    box = [slice(0, n) for n in o.shape]
    notes = []
    if math.prod(o.shape) > budget:
        keep = scene.region
        if keep is None and scene.outlines:
            keep = np.logical_or.reduce([m for m, _, _ in scene.outlines])
        if keep is not None and keep.any():
            from .regions import bounding_box

            margin = [int(math.ceil(_CROP_MARGIN_MM / s)) for s in o.spacing]
            box = list(bounding_box(keep, margin, o.shape))
            notes.append(f"cropped to {'the liver' if scene.region is not None else 'the tumor and reference'} "
                         f"with {_CROP_MARGIN_MM:g} mm around")
    stride = [1, 1, 1]
    lengths = [b.stop - b.start for b in box]
    while math.prod(-(-n // s) for n, s in zip(lengths, stride)) > budget:
        # coarsen the axis with the finest effective spacing, so voxels tend to cubes
        a = min(range(3), key=lambda k: (o.spacing[k] * stride[k], -k))
        stride[a] += 1
    for s in sorted(set(stride) - {1}):
        axes = " and ".join(name for name, t in zip("zyx", stride) if t == s)
        notes.append(f"every {s}{_ordinal(s)} voxel along {axes}")
    sl = tuple(slice(b.start, b.stop, s) for b, s in zip(box, stride))
    volumes = {"ct": np.rint(window(scene.ct[sl], *scene.options.window) * 255).astype(np.uint8)}
    t = scene.style.scaled(scene.values[sl])
    shown = np.isfinite(t) if scene.region is None else np.isfinite(t) & scene.region[sl]
    volumes["map"] = np.where(shown, 1 + np.rint(np.nan_to_num(t) * 254), 0).astype(np.uint8)
    if scene.outlines:
        bits = np.zeros(volumes["ct"].shape, np.uint8)
        for mask, _, name in scene.outlines:
            bits |= mask[sl].astype(np.uint8) * _BITS[name]
        volumes["masks"] = bits
    shape = volumes["ct"].shape
    note = "; ".join(notes) if notes else "full resolution"
    return volumes, {"box": box, "stride": stride, "note": f"{note}: {shape[0]} x {shape[1]} x {shape[2]} voxels"}


def _ordinal(n: int) -> str:
    return {1: "st", 2: "nd", 3: "rd"}.get(n if n < 20 else n % 10, "th")


def _png_mosaic(volume: np.ndarray) -> tuple[str, int]:
    """A grey PNG data URI of the slices (axis 0) tiled row by row, and the tile columns."""
    from PIL import Image  # Pillow comes with matplotlib

    z, y, x = volume.shape
    cols = max(1, min(z, round(math.sqrt(z * y / x))))
    rows = -(-z // cols)
    tiles = np.zeros((rows * y, cols * x), np.uint8)
    for k in range(z):
        r, c = divmod(k, cols)
        tiles[r * y:(r + 1) * y, c * x:(c + 1) * x] = volume[k]
    buf = _bytes_io.BytesIO()
    Image.fromarray(tiles).save(buf, format="PNG")
    return _data_uri(buf.getvalue()), cols


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _viewer_payload(scene: Scene) -> tuple[dict[str, Any], dict[str, str]]:
    volumes, info = viewer_volumes(scene)
    o, box, stride = scene.orientation, info["box"], info["stride"]
    images, cols = {}, 1
    for name, vol in volumes.items():
        images[name], cols = _png_mosaic(vol)
    spacing = [o.spacing[k] * stride[k] for k in range(3)]
    shape = list(volumes["ct"].shape)
    slices = {}
    for k, view in enumerate(VIEWS):
        first = o.slice_number(view, box[k].start)
        step = stride[k] * (-1 if o.flips[k] else 1)
        start = min(max(round((scene.focus[k] - box[k].start) / stride[k]), 0), shape[k] - 1)
        slices[view] = {"first": first, "step": step, "start": start}
    style = scene.style
    payload = {
        "shape": shape,
        "spacing": spacing,
        "mosaic_cols": cols,
        "slices": slices,
        "letters": {v: list(EDGE_LETTERS[v]) for v in VIEWS},
        "palette": style.lut(255).ravel().tolist(),
        "range": [style.vmin, style.vmax],
        "center": style.center,
        "thresholds": list(style.thresholds),
        "label": style.label,
        "outlines": [{"bit": _BITS[name], "colour": colour, "name": name} for _, colour, name in scene.outlines],
        "opacity": scene.options.opacity,
        "css_px_per_mm": _VIEWER_PX / max(n * s for n, s in zip(shape, spacing)),
        "note": info["note"],
    }
    return payload, images


def write_report(
    path: Union[str, os.PathLike],
    scene: Scene,
    *,
    figures: Mapping[str, bytes],
    record: Optional[Mapping[str, Any]] = None,
    table: Optional["pd.DataFrame"] = None,
) -> Path:
    """Write the self-contained HTML report of one case.

    Parameters
    ----------
    path : path
        The .html file to write (replaced atomically if it exists).
    scene : Scene
        The case as drawn (its options say window, palette, opacity).
    figures : mapping
        Figure name (:data:`entropymap.render.FIGURES`) -> PNG bytes, embedded in that order.
    record : mapping, optional
        The ``run.json`` record: its inputs and parameters are listed.
    table : DataFrame, optional
        ``statistics.csv``: one column per region and quantity.
    """
    payload, images = _viewer_payload(scene)
    text = _html(scene, payload, images, figures, record, table)
    return _write_atomic(Path(path), lambda fh: fh.write(text.encode("utf-8")))


def _html(scene: Scene, payload: dict, images: dict[str, str], figures: Mapping[str, bytes],
          record: Optional[Mapping[str, Any]], table: Optional["pd.DataFrame"]) -> str:
    e = html.escape
    image_name = Path(str(((record or {}).get("inputs") or {}).get("image", {}).get("path", "case"))).name
    where = f"{scene.slice_label(scene.options.view, scene.slice_of(scene.options.view))} ({scene.focus_note})"
    figure_html = "\n".join(
        f'<figure><img alt="{e(name)}" src="{_data_uri(png)}">'
        f"<figcaption>{e(_CAPTIONS.get(name, name).format(where=where))}</figcaption></figure>"
        for name, png in figures.items()
    )
    volumes = "\n".join(f'<img hidden alt="" id="vol-{name}" src="{uri}">' for name, uri in images.items())
    thresholds = scene.case.thresholds
    reading = (
        f"1.0 is as disordered as the {e(scene.case.reference_name)} mean; above {thresholds[1]:g} is "
        f"hyper-entropic, below {thresholds[0]:g} hypo-entropic."
        if scene.normalized else f"Local entropy in {e(scene.case.unit)}."
    )
    names = {"tumor": "tumor", "reference": "reference region"}
    legend = ", ".join(f'<span class="{name}">{names[name]}</span>' for _, _, name in scene.outlines)
    legend = f" Outlines: {legend}." if legend else ""
    view_buttons = "".join(
        f'<label><input type="radio" name="view" value="{v}"{" checked" if v == "axial" else ""}> {v}</label>'
        for v in VIEWS)
    # JSON inside <script>: "</" must not appear, or the script would end early
    data = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    return _TEMPLATE.format(
        title=e(f"entropymap report: {image_name}"),
        heading=e(image_name),
        lead=f"Local entropy map {e(scene.region_note)}, {e(_window_name(scene.options.window))} CT. {reading}{legend}",
        view_buttons=view_buttons,
        opacity=round(100 * scene.options.opacity),
        note=e(f"Viewer: {payload['note']}. Scroll or use the arrow keys over the image to change slice; "
               f"the address (#view=coronal&slice=40&opacity=0.3) sets the view."),
        volumes=volumes,
        figures=figure_html or "<p>No figures were drawn.</p>",
        statistics=_statistics_html(table, scene.case.unit) + _patterns_html((record or {}).get("patterns")),
        parameters=_parameters_html(scene, record, payload["note"]),
        data=data,
        script=_SCRIPT,
        tumor_ink=INK_COLOURS["tumor"],
        reference_ink=INK_COLOURS["reference"],
    )


def _fmt(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)) or v is None:
        return str(v)
    if isinstance(v, (int, np.integer)):
        return f"{int(v)}"
    if isinstance(v, (float, np.floating)):
        return "" if not np.isfinite(v) else (f"{int(v)}" if float(v).is_integer() and abs(v) < 1e12 else f"{v:.4g}")
    if isinstance(v, (list, tuple)):
        return ", ".join(map(_fmt, v))
    return str(v)


def _size(v: Optional[Sequence[Any]]) -> str:
    return " x ".join(map(_fmt, v)) if v else ""


def _statistics_html(table: Optional["pd.DataFrame"], unit: str) -> str:
    if table is None or table.empty:
        return "<p>No statistics table.</p>"
    e = html.escape
    keys = [(r, q) for r, q in zip(table["region"], table["quantity"])]
    heads = "".join(f"<th>{e(r)}<br>{e(q if q != 'entropy' else f'entropy ({unit})')}</th>" for r, q in keys)
    rows = []
    for col in table.columns:
        if col in ("region", "quantity"):
            continue
        cells = "".join(f"<td>{e(_fmt(v))}</td>" for v in table[col])
        rows.append(f"<tr><th>{e(col.replace('_', ' '))}</th>{cells}</tr>")
    return f'<table class="stats"><thead><tr><th></th>{heads}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _patterns_html(patterns: Optional[Mapping[str, Any]]) -> str:
    """The pattern and margin numbers of every analysed lesion (run.json's ``patterns``)."""
    if not patterns:
        return ""
    e = html.escape
    cols = [("lesion", "lesion"), ("pattern", "pattern"), ("volume_ml", "mL"), ("hyper_fraction", "hyper"),
            ("rim_coverage", "rim coverage"), ("core_hyper_fraction", "core hyper"),
            ("extension_mm", "extension mm"), ("extension_ml", "extension mL"), ("extension_flag", "flag")]
    head = "".join(f"<th>{e(t)}</th>" for _, t in cols)
    rows = "".join("<tr>" + "".join(f"<td>{e(_fmt(row.get(c)))}</td>" for c, _ in cols) + "</tr>"
                   for row in patterns.get("lesions", []))
    skipped = patterns.get("skipped_below_min_diameter", 0)
    min_d = (patterns.get("parameters") or {}).get("min_diameter_mm")
    return (f"<h3>Entropic patterns and margin</h3><p class=\"note\">Per tumor component ({skipped} below "
            f"{_fmt(min_d)} mm skipped; \"all\" is the whole mask). Fractions of voxels above the hyper "
            "threshold; rim coverage over 3-D sectors; extension: hyper-entropic tissue connected to the lesion "
            "outside it, corrected for the window's reach (see patterns.csv).</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")


def _parameters_html(scene: Scene, record: Optional[Mapping[str, Any]], viewer_note: str) -> str:
    e = html.escape
    groups: list[tuple[str, list[tuple[str, Any]]]] = []
    if record:
        inputs = [(name, f"{Path(v['path']).name} (sha256 {v['sha256'][:12]}...)")
                  for name, v in record.get("inputs", {}).items() if v]
        inputs += [(f"{k} label", v) for k, v in record.get("labels", {}).items() if v is not None]
        groups.append(("Inputs", inputs))
        geo = record.get("geometry", {})
        groups.append(("Image grid", [("shape (z, y, x)", _size(geo.get("shape"))),
                                      ("spacing (z, y, x), mm", _size(geo.get("spacing"))),
                                      ("origin (x, y, z), mm", geo.get("origin"))]))
        params = dict(record.get("parameters", {}))
        params["kernel voxels (z, y, x)"] = _size(record.get("kernel_voxels_zyx"))
        groups.append(("Map parameters", list(params.items())))
        groups.append(("Discretisation", list(record.get("discretization", {}).items())))
        groups.append(("Reference region", list(record.get("reference_region", {}).items())
                       + [("computed region (z, y, x)", record.get("computed_region_zyx"))]))
        versions = record.get("versions", {})
        groups.append(("Software", [(k, v) for k, v in versions.items()] + [("threads", record.get("threads"))]))
    opt, style, oblique = scene.options, scene.style, scene.orientation.obliquity_deg
    groups.append(("Pictures", [
        ("CT window", _window_name(opt.window)), ("map shown", "normalised" if scene.normalized else "raw"),
        ("palette", style.cmap), ("colour range", f"{style.vmin:g} .. {style.vmax:g}"
                                  + (f", centred on {style.center:g}" if style.center is not None else "")),
        ("opacity", opt.opacity), ("map drawn", scene.region_note), ("interpolation", opt.interpolation),
        ("viewer", viewer_note),
        ("orientation", "radiological; nearest patient planes" + (f" (image oblique by {oblique:.1f} degrees)"
                                                                    if oblique > 0.5 else "")),
    ]))
    out = []
    for title, rows in groups:
        body = "".join(f"<tr><th>{e(str(k).replace('_', ' '))}</th><td>{e(_fmt(v))}</td></tr>" for k, v in rows)
        out.append(f'<table class="params"><caption>{e(title)}</caption><tbody>{body}</tbody></table>')
    return "\n".join(out)


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1200px;
  padding: 0 16px 32px; color: #1a1a1a; background: #fafafa; }}
h1 {{ font-size: 22px; margin: 18px 0 4px; }} h2 {{ font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ccc; }}
nav a {{ margin-right: 14px; }}
.tumor {{ color: {tumor_ink}; font-weight: 600; }} .reference {{ color: {reference_ink}; font-weight: 600; }}
#viewer {{ display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }}
.controls {{ display: flex; flex-direction: column; gap: 10px; min-width: 260px; }}
.controls fieldset {{ border: 1px solid #ccc; border-radius: 4px; }}
.controls input[type=range] {{ width: 220px; vertical-align: middle; }}
.stage {{ position: relative; background: #000; padding: 18px; border-radius: 4px; outline: none; }}
.stage canvas {{ display: block; image-rendering: pixelated; }}
.stage .edge {{ position: absolute; color: #fff; font-weight: 700; font-size: 13px; }}
.edge.top {{ top: 1px; left: 50%; transform: translateX(-50%); }} .edge.bottom {{ bottom: 1px; left: 50%; transform: translateX(-50%); }}
.edge.left {{ left: 4px; top: 50%; transform: translateY(-50%); }} .edge.right {{ right: 4px; top: 50%; transform: translateY(-50%); }}
.note {{ color: #555; font-size: 12px; max-width: 900px; }}
figure {{ margin: 16px 0; }} figure img {{ max-width: 100%; height: auto; border: 1px solid #ddd; background: #fff; }}
figcaption {{ color: #444; font-size: 13px; }}
table {{ border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; background: #fff; }}
th, td {{ border: 1px solid #ddd; padding: 3px 8px; text-align: right; }} tbody th {{ text-align: left; font-weight: 600; }}
caption {{ text-align: left; font-weight: 700; padding: 4px 0; }}
.params td {{ text-align: left; font-family: ui-monospace, monospace; font-size: 12px; }}
#parameters {{ display: flex; flex-wrap: wrap; gap: 0 24px; align-items: flex-start; }}
.error {{ color: #b00; font-weight: 600; }}
</style>
</head>
<body>
<header>
<h1>Local entropy map: {heading}</h1>
<p>{lead}</p>
<nav><a href="#viewer-section">Viewer</a><a href="#figures">Figures</a><a href="#statistics">Statistics</a><a href="#parameters">Parameters</a></nav>
</header>
<section id="viewer-section">
<h2>Slice viewer</h2>
<div id="viewer" data-view="" data-slice="" data-position="" data-opacity="" data-rendered="">
<div class="controls">
<fieldset><legend>view</legend>{view_buttons}</fieldset>
<label>slice <input type="range" id="slice" min="0" max="0" step="1" value="0"> <output id="slice-label"></output></label>
<label>map opacity <input type="range" id="opacity" min="0" max="100" step="1" value="{opacity}"> <output id="opacity-label"></output></label>
<label><input type="checkbox" id="outlines" checked> outlines</label>
<canvas id="colorbar" width="300" height="58"></canvas>
</div>
<div class="stage" id="stage" tabindex="0"><canvas id="slice-canvas" width="1" height="1"></canvas>
<span class="edge top"></span><span class="edge bottom"></span><span class="edge left"></span><span class="edge right"></span></div>
</div>
<p class="note">{note}</p>
<noscript><p class="error">The slice viewer needs JavaScript; the figures below do not.</p></noscript>
{volumes}
</section>
<section id="figures">
<h2>Figures</h2>
{figures}
</section>
<section id="statistics">
<h2>Statistics</h2>
<p class="note">Of the raw local entropy map and of the CT (HU) in each region; variance without Bessel's correction,
percentiles with linear interpolation, crossings in raster order (see statistics.csv).</p>
{statistics}
</section>
<section id="parameters">
<h2 style="flex-basis: 100%">Parameters</h2>
{parameters}
</section>
<footer class="note">Made by entropymap after Costa G. et al., "Mapping Tumor Heterogeneity via Local Entropy Assessment:
Making Biomarkers Visible", J Digit Imaging 36 (2023), doi:10.1007/s10278-023-00799-9. Not for diagnostic use on its own.</footer>
<script type="application/json" id="viewer-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("viewer-data").textContent);
  var root = document.getElementById("viewer");
  var canvas = document.getElementById("slice-canvas");
  var stage = document.getElementById("stage");
  var sliceInput = document.getElementById("slice");
  var opacityInput = document.getElementById("opacity");
  var outlineInput = document.getElementById("outlines");
  var NZ = D.shape[0], NY = D.shape[1], NX = D.shape[2];
  var AXIS = {axial: 0, coronal: 1, sagittal: 2};
  var vol = {};
  var state = {view: "axial", pos: {}};
  Object.keys(D.slices).forEach(function (v) { state.pos[v] = D.slices[v].start; });

  // The tiled grey PNG back into a Uint8Array (z, y, x).
  function unpack(name) {
    var img = document.getElementById("vol-" + name);
    if (!img) { return null; }
    var c = document.createElement("canvas");
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    var g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    var px = g.getImageData(0, 0, c.width, c.height).data;
    var out = new Uint8Array(NZ * NY * NX), cols = D.mosaic_cols;
    for (var k = 0; k < NZ; k++) {
      var r0 = Math.floor(k / cols) * NY, c0 = (k % cols) * NX;
      for (var y = 0; y < NY; y++) {
        var src = ((r0 + y) * c.width + c0) * 4, dst = (k * NY + y) * NX;
        for (var x = 0; x < NX; x++) { out[dst + x] = px[src + 4 * x]; }
      }
    }
    return out;
  }

  // Slice k of a view as shown: size, mm per pixel, voxel = base + row * dr + col * dc.
  // Display axes run inferior->superior, anterior->posterior, right->left.
  function panel(view, k) {
    var top = (NZ - 1) * NY * NX;
    if (view === "axial") { return {w: NX, h: NY, sh: D.spacing[1], sw: D.spacing[2], base: k * NY * NX, dr: NX, dc: 1}; }
    if (view === "coronal") { return {w: NX, h: NZ, sh: D.spacing[0], sw: D.spacing[2], base: top + k * NX, dr: -NY * NX, dc: 1}; }
    return {w: NY, h: NZ, sh: D.spacing[0], sw: D.spacing[1], base: top + k, dr: -NY * NX, dc: NX};
  }

  function sliceNumber(view, k) { return D.slices[view].first + D.slices[view].step * k; }
  function toPosition(view, number) {
    var k = Math.round((number - D.slices[view].first) / D.slices[view].step);
    return Math.min(Math.max(k, 0), D.shape[AXIS[view]] - 1);
  }
  function hex(c) { return [parseInt(c.slice(1, 3), 16), parseInt(c.slice(3, 5), 16), parseInt(c.slice(5, 7), 16)]; }
  var outlines = D.outlines.map(function (o) { return {bit: o.bit, rgb: hex(o.colour)}; });

  function render() {
    var view = state.view, k = state.pos[view], p = panel(view, k);
    var a = opacityInput.value / 100, pal = D.palette, masks = outlineInput.checked ? vol.masks : null;
    canvas.width = p.w; canvas.height = p.h;
    canvas.style.width = (p.w * p.sw * D.css_px_per_mm) + "px";
    canvas.style.height = (p.h * p.sh * D.css_px_per_mm) + "px";
    var g = canvas.getContext("2d"), img = g.createImageData(p.w, p.h), px = img.data;
    for (var r = 0; r < p.h; r++) {
      for (var c = 0; c < p.w; c++) {
        var v = p.base + r * p.dr + c * p.dc, o = 4 * (r * p.w + c), grey = vol.ct[v], m = vol.map[v];
        var R = grey, G = grey, B = grey;
        if (m > 0) {
          var q = 3 * (m - 1);
          R = grey * (1 - a) + pal[q] * a; G = grey * (1 - a) + pal[q + 1] * a; B = grey * (1 - a) + pal[q + 2] * a;
        }
        if (masks && masks[v]) {
          for (var i = 0; i < outlines.length; i++) {
            var bit = outlines[i].bit;
            if ((masks[v] & bit) && ((r > 0 && !(masks[v - p.dr] & bit)) || (r < p.h - 1 && !(masks[v + p.dr] & bit)) ||
                                     (c > 0 && !(masks[v - p.dc] & bit)) || (c < p.w - 1 && !(masks[v + p.dc] & bit)))) {
              R = outlines[i].rgb[0]; G = outlines[i].rgb[1]; B = outlines[i].rgb[2];
            }
          }
        }
        px[o] = R; px[o + 1] = G; px[o + 2] = B; px[o + 3] = 255;
      }
    }
    g.putImageData(img, 0, 0);
    var h = 0x811c9dc5;  // FNV-1a of the pixels shown, so a test can tell two pictures apart
    for (var j = 0; j < px.length; j++) { h = Math.imul(h ^ px[j], 16777619) >>> 0; }
    var number = sliceNumber(view, k);
    root.dataset.view = view; root.dataset.slice = number; root.dataset.position = k;
    root.dataset.opacity = a; root.dataset.rendered = ("0000000" + h.toString(16)).slice(-8);
    document.getElementById("slice-label").textContent = view + " " + number + " (" + (k + 1) + " of " + D.shape[AXIS[view]] + ")";
    document.getElementById("opacity-label").textContent = Math.round(a * 100) + " %";
    var L = D.letters[view];
    ["top", "bottom", "left", "right"].forEach(function (side, i) { stage.querySelector(".edge." + side).textContent = L[i]; });
  }

  function showView(view) {
    state.view = view;
    sliceInput.max = D.shape[AXIS[view]] - 1;
    sliceInput.value = state.pos[view];
    render();
  }

  function step(delta) {
    var n = D.shape[AXIS[state.view]];
    sliceInput.value = Math.min(Math.max(state.pos[state.view] + delta, 0), n - 1);
    sliceInput.dispatchEvent(new Event("input", {bubbles: true}));
  }

  function colorbar() {
    var cb = document.getElementById("colorbar"), g = cb.getContext("2d"), pal = D.palette, x0 = 18, w = cb.width - 36;
    var lo = D.range[0], hi = D.range[1], ctr = D.center;
    function at(v) {  // the palette position of a value, as Python's MapStyle.scaled
      var t = ctr === null ? (v - lo) / (hi - lo) : (v >= ctr ? 0.5 + 0.5 * (v - ctr) / (hi - ctr) : 0.5 - 0.5 * (ctr - v) / (ctr - lo));
      return x0 + Math.min(Math.max(t, 0), 1) * w;
    }
    for (var i = 0; i < w; i++) {
      var q = 3 * Math.min(254, Math.round(i / (w - 1) * 254));
      g.fillStyle = "rgb(" + pal[q] + "," + pal[q + 1] + "," + pal[q + 2] + ")";
      g.fillRect(x0 + i, 4, 1, 16);
    }
    g.fillStyle = "#000"; g.font = "11px sans-serif"; g.textAlign = "center";
    var ticks = [lo, hi].concat(ctr === null ? [] : [ctr]).concat(D.thresholds);
    ticks.forEach(function (v) { var x = at(v); g.fillRect(x - 0.5, 20, 1, 5); g.fillText(+v.toPrecision(3), x, 36); });
    D.thresholds.forEach(function (v) { var x = at(v); g.setLineDash([3, 2]); g.beginPath(); g.moveTo(x, 4); g.lineTo(x, 20); g.stroke(); });
    g.fillText(D.label, x0 + w / 2, 52);
  }

  // State from the address: #view=coronal&slice=40&opacity=0.3 (slice: array index, as labelled).
  function applyHash() {
    var q = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      var i = kv.indexOf("=");
      if (i > 0) { q[decodeURIComponent(kv.slice(0, i))] = decodeURIComponent(kv.slice(i + 1)); }
    });
    if (AXIS.hasOwnProperty(q.view)) {
      var radio = document.querySelector('input[name="view"][value="' + q.view + '"]');
      radio.checked = true;
      radio.dispatchEvent(new Event("change", {bubbles: true}));
    }
    if (q.slice !== undefined && isFinite(+q.slice)) {
      sliceInput.value = toPosition(state.view, +q.slice);
      sliceInput.dispatchEvent(new Event("input", {bubbles: true}));
    }
    if (q.opacity !== undefined && isFinite(+q.opacity)) {
      opacityInput.value = Math.round(100 * Math.min(Math.max(+q.opacity, 0), 1));
      opacityInput.dispatchEvent(new Event("input", {bubbles: true}));
    }
  }

  function init() {
    try {
      vol.ct = unpack("ct"); vol.map = unpack("map"); vol.masks = unpack("masks");
    } catch (err) {
      root.insertAdjacentHTML("beforebegin", '<p class="error">This browser did not let the page read its own embedded ' +
        "images (" + err.name + "), so the viewer cannot show slices; the figures below are complete.</p>");
      return;
    }
    document.querySelectorAll('input[name="view"]').forEach(function (radio) {
      radio.addEventListener("change", function () { if (radio.checked) { showView(radio.value); } });
    });
    sliceInput.addEventListener("input", function () { state.pos[state.view] = +sliceInput.value; render(); });
    opacityInput.addEventListener("input", render);
    outlineInput.addEventListener("change", render);
    stage.addEventListener("wheel", function (ev) { ev.preventDefault(); step(ev.deltaY > 0 ? -1 : 1); }, {passive: false});
    stage.addEventListener("keydown", function (ev) {
      var d = {ArrowUp: 1, ArrowRight: 1, PageUp: 5, ArrowDown: -1, ArrowLeft: -1, PageDown: -5}[ev.key];
      if (d) { ev.preventDefault(); step(d); }
    });
    colorbar();
    showView("axial");
    applyHash();
    window.addEventListener("hashchange", applyHash);
  }

  if (document.readyState === "complete") { init(); } else { window.addEventListener("load", init); }
})();
"""
