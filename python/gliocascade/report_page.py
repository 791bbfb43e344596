"""One case's self-contained report page (``report/cases/<id>.html``): images, QC and facts.

A reader sent here by a flag on the cohort page must see, without opening a viewer, where the
tumour is (a mosaic spanning the largest component and orthogonal slices through it), how it
compares with the reference, whether preprocessing went right, and what produced it. Every
image carries its view and slice index (``data-view``, ``data-slice``) so the choice of slices
can be checked.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from . import report_figures as fig
from .labels import REGIONS
from .layout import NATIVE_T1CE_ROLE
from .report_case import CaseData, canonical
from .report_html import column_title

ATLAS_RGB = (255, 0, 255)
BRAINMASK_RGB = (255, 255, 0)
_CSS = """body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1400px}
table{border-collapse:collapse;font-size:12px;margin:4px 0}td,th{border:1px solid #ccc;padding:2px 6px}
th{background:#eee;text-align:left}.row{display:flex;flex-wrap:wrap;gap:6px}figure{margin:0}
figcaption{font-size:11px;color:#555}img.slice{image-rendering:pixelated}.flag{color:#a00}.warn{color:#a60}img{display:block}"""
_VIEWS = ("axial", "coronal", "sagittal")


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(rgb: np.ndarray, view: str, index: int, what: str, caption: str, aspect: float = 1.0) -> str:
    alt = f"{what} {view} slice {index}"
    width, height = fig.display_size(rgb.shape, aspect)
    return (f"<figure><img class='slice' data-view='{view}' data-slice='{index}' data-what='{_esc(what)}' "
            f"width='{width}' height='{height}' alt='{_esc(alt)}' src='data:image/png;base64,{fig.png_b64(rgb)}'>"
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def _aspect(zooms: tuple[float, ...], view: str) -> float:
    """Row spacing over column spacing of a displayed slice (rows are z for coronal and sagittal)."""
    return {"axial": zooms[1] / zooms[0], "coronal": zooms[2] / zooms[0], "sagittal": zooms[2] / zooms[1]}[view]


def _labelled(data: CaseData, background: np.ndarray, lohi: tuple[float, float], view: str, index: int,
              name: str, caption: str) -> str:
    rgb = fig.grey_rgb(fig.view(background, view, index), lohi)
    ref = None if data.reference is None else [fig.view(r, view, index) for r in data.reference]
    rgb = fig.draw_labels(rgb, fig.view(data.labels, view, index), ref)
    return _img(rgb, view, index, name, caption, _aspect(data.zooms, view))


def images_section(data: CaseData, comp: fig.Component | None) -> str:
    """Mosaic over the largest component's z-range and orthogonal slices through its centre, per modality."""
    if comp is None:
        return "<h2>Segmentation</h2><p class='flag'>Empty prediction: no tumour voxels to show.</p>"
    zlo, zhi = comp.z_range
    parts = ["<h2>Segmentation</h2>",
             f"<p>Largest 26-connected component: {comp.voxels} voxels ({comp.voxels * data.voxel_ml:.2f} mL), "
             f"axial slices {zlo} to {zhi}, centre {comp.centre}. Fill: label; outline: opaque label colour"
             + ("; cyan: reference outline" if data.reference is not None else "") + ".</p>"]
    legend = ", ".join(f"<span style='color:rgb{fig.LABEL_RGB[v]}'>&#9632;</span> {n}"
                       for v, n in ((1, "necrosis / non-enhancing"), (2, "oedema"), (4, "enhancing")))
    parts.append(f"<p>{legend}</p>")
    backgrounds = [(n, b) for n, b in (("T1Gd", data.t1ce), ("FLAIR", data.flair)) if b is not None]
    if not backgrounds:
        backgrounds = [("no image", np.zeros(data.labels.shape, dtype=np.float32))]
    for name, bg in backgrounds:
        lohi = fig.window(bg)
        parts.append(f"<h3>Mosaic on {name}</h3><div class='row mosaic'>")
        parts += [_labelled(data, bg, lohi, "axial", z, name, f"{name} axial z={z}")
                  for z in fig.mosaic_slices(comp.z_range)]
        parts.append(f"</div><h3>Orthogonal slices on {name}</h3><div class='row ortho'>")
        for view, index in zip(_VIEWS, (comp.centre[2], comp.centre[1], comp.centre[0])):
            parts.append(_labelled(data, bg, lohi, view, index, name, f"{name} {view} {index}"))
        parts.append("</div>")
    return "\n".join(parts)


def disagreement_section(data: CaseData) -> str:
    """Per region, the axial slice where prediction and reference disagree most."""
    if data.reference is None:
        return ""
    bg = data.t1ce if data.t1ce is not None else np.zeros(data.labels.shape, dtype=np.float32)
    lohi = fig.window(bg)
    parts = ["<h2>Prediction vs reference</h2>",
             f"<p>Reference: {_esc(data.reference_path)}. <span style='color:rgb{fig.FALSE_POSITIVE_RGB}'>"
             f"&#9632;</span> predicted only, <span style='color:rgb{fig.FALSE_NEGATIVE_RGB}'>&#9632;</span> "
             "reference only, cyan: reference outline.</p><div class='row disagreement'>"]
    for pred, ref, region in zip(data.regions, data.reference, REGIONS):
        wrong = (pred ^ ref).sum(axis=(0, 1))
        z = int(wrong.argmax()) if wrong.any() else int(ref.sum(axis=(0, 1)).argmax())
        rgb = fig.draw_disagreement(fig.grey_rgb(fig.view(bg, "axial", z), lohi),
                                    fig.view(pred, "axial", z), fig.view(ref, "axial", z))
        parts.append(_img(rgb, "axial", z, f"{region} disagreement",
                          f"{region}: {int(wrong[z])} voxels differ at z={z} ({int(wrong.sum())} in all)",
                          _aspect(data.zooms, "axial")))
    parts.append("</div>")
    return "\n".join(parts)


def similarity_rows(record: dict) -> list[tuple[str, float | None, float | None, bool | None]]:
    """(check, score, threshold, passed) from the QC block, else from the similarity scores and thresholds."""
    qc = record.get("qc") or {}
    if qc.get("checks"):
        return [(n, c.get("score"), c.get("threshold"), c.get("passed")) for n, c in qc["checks"].items()]
    params = record.get("parameters") or {}
    rows = []
    for name, score in (record.get("similarity_edge_corr") or {}).items():
        threshold = params.get("min_edge_corr_atlas" if name == "atlas" else "min_edge_corr_coregistration")
        passed = None if score is None or threshold is None else bool(score >= threshold)
        rows.append((name, score, threshold, passed))
    return rows


def _atlas_mask(record: dict, like_shape: tuple[int, ...], atlas: Path | None = None) -> np.ndarray | None:
    """The atlas brain preprocess used: the file its record names, else ``atlas`` (a folder), else the default."""
    from .atlas import locate_atlas
    from .errors import InputError

    path = ((record.get("atlas") or {}).get("t1_skullstripped") or {}).get("path")
    if not path or not Path(path).is_file():
        try:
            path = locate_atlas(atlas)["t1_skullstripped"]
        except InputError:
            return None
    mask = canonical(Path(path))
    return mask > 0 if mask is not None and mask.shape == like_shape else None


def preprocessing_section(data: CaseData, comp: fig.Component | None, atlas: Path | None = None) -> str:
    """For native rows: atlas brain outline and brain-mask contour on each registered modality, QC scores."""
    record = data.provenance.get("preprocess")
    if not record:
        return ""
    parts = ["<h2>Preprocessing</h2>"]
    rows = similarity_rows(record)
    if rows:
        parts.append("<table class='similarity'><tr><th>check</th><th>edge correlation</th><th>threshold</th>"
                     "<th>passed</th></tr>")
        for name, score, threshold, passed in rows:
            mark = "" if passed is None else ("yes" if passed else "<b class='flag'>no</b>")
            parts.append(f"<tr><td>{_esc(name)}</td><td>{'' if score is None else f'{score:.3f}'}</td>"
                         f"<td>{'' if threshold is None else _esc(threshold)}</td><td>{mark}</td></tr>")
        parts.append("</table>")
    qc = record.get("qc") or {}
    if qc.get("decision"):
        parts.append(f"<p>QC decision: <b>{_esc(qc['decision'])}</b> {_esc('; '.join(qc.get('reasons') or []))}</p>")
    brain_path = data.files.get("brainmask")
    brain = canonical(brain_path) if brain_path is not None else None
    atlas = _atlas_mask(record, data.labels.shape, atlas)
    z = comp.centre[2] if comp else data.labels.shape[2] // 2
    parts.append(f"<p><span style='color:rgb{ATLAS_RGB}'>&#9632;</span> atlas brain outline"
                 + ("" if atlas is not None else " (atlas not found)")
                 + f", <span style='color:rgb{BRAINMASK_RGB}'>&#9632;</span> brain mask, axial z={z}.</p>"
                 "<div class='row registration'>")
    for modality in ("t1", "t1ce", "t2", "flair"):
        path = data.files.get(modality)
        image = canonical(path) if path is not None else None
        if image is None or image.shape != data.labels.shape:
            continue
        rgb = fig.grey_rgb(fig.view(image, "axial", z), fig.window(image))
        masks = [(fig.view(m > 0, "axial", z), c) for m, c in ((atlas, ATLAS_RGB), (brain, BRAINMASK_RGB))
                 if m is not None and m.shape == image.shape]
        parts.append(_img(fig.draw_contours(rgb, masks), "axial", z, f"registered {modality}",
                          f"{modality} (BraTS space)", _aspect(data.zooms, "axial")))
    parts.append(native_panel(data))
    parts.append("</div>")
    return "\n".join(parts)


def native_panel(data: CaseData) -> str:
    """The native-grid segmentation over the native T1Gd, through its largest component (when both exist)."""
    seg, t1ce = data.files.get("seg_native"), data.files.get(NATIVE_T1CE_ROLE)
    if seg is None or t1ce is None:
        return ""
    from .io import load_nifti

    labels = canonical(seg, dtype=np.float32)
    image = canonical(t1ce, load_nifti(seg))
    if labels is None or image is None:
        return ""
    labels = np.rint(labels).astype(np.int16)
    comp = fig.largest_component(labels)
    z = comp.centre[2] if comp else labels.shape[2] // 2
    rgb = fig.draw_labels(fig.grey_rgb(fig.view(image, "axial", z), fig.window(image)), fig.view(labels, "axial", z))
    zooms = nib_zooms(seg)
    return _img(rgb, "axial", z, "native T1Gd", f"native segmentation on native T1Gd, z={z}", zooms[1] / zooms[0])


def nib_zooms(path: Path) -> tuple[float, ...]:
    """Voxel sizes of an image in RAS order (as its canonical arrays are displayed)."""
    import nibabel as nib

    return tuple(float(z) for z in nib.as_closest_canonical(nib.load(str(path))).header.get_zooms()[:3])


def facts_section(data: CaseData, metrics: dict[str, float], cards: dict[str, dict] | None = None) -> str:
    """Volumes, components, metrics, runtimes, model card, versions and commands."""
    facts = data.facts()
    vols = data.volumes_ml()
    parts = ["<h2>Facts</h2><table class='volumes'><tr>"
             + "".join(f"<th>{r} (mL)</th>" for r in REGIONS)
             + "<th>connected components (26)</th><th>components of &ge; 10 voxels</th></tr><tr>"
             + "".join(f"<td>{vols[r]:.2f}</td>" for r in REGIONS)
             + f"<td>{facts.n_components}</td><td>{facts.n_large_components}</td></tr></table>"]
    shown = {k: v for k, v in metrics.items() if k != "case_id" and v == v}
    if shown:
        parts.append("<h3>Metrics</h3><table class='metrics'><tr>"
                     + "".join(f"<th>{_esc(column_title(k))}</th>" for k in shown) + "</tr><tr>"
                     + "".join(f"<td>{v:.4g}</td>" for v in shown.values()) + "</tr></table>")
    timings = [(s, r.get("timings_s") or {}) for s, r in data.provenance.items()]
    if timings:
        parts.append("<h3>Runtimes (s)</h3><table class='timings'><tr><th>step</th><th>total (s)</th>"
                     "<th>parts (s)</th></tr>")
        for step, t in timings:
            detail = ", ".join(f"{_esc(k)} {v}" for k, v in t.items() if k != "total")
            parts.append(f"<tr><td>{_esc(step)}</td><td>{_esc(t.get('total', ''))}</td><td>{detail}</td></tr>")
        parts.append("</table>")
    parts.append(modalities_line(data))
    parts.append(model_section(data, cards))
    versions = {"gliocascade": __version__}
    for record in data.provenance.values():
        versions.update(record.get("versions") or {})
    parts.append("<h3>Software</h3><p class='versions'>"
                 + ", ".join(f"{_esc(k)} {_esc(v)}" for k, v in versions.items()) + "</p>")
    commands = [(s, r["command"]) for s, r in data.provenance.items() if r.get("command")]
    if commands:
        parts.append("<h3>Commands</h3>" + "".join(f"<p><b>{_esc(s)}</b>: <code>{_esc(c)}</code></p>"
                                                   for s, c in commands))
    return "\n".join(parts)


def modalities_line(data: CaseData) -> str:
    """Which modalities the case had and which the model used (predict's record), so a segmentation
    made without some sequence is visibly so."""
    record = (data.provenance.get("predict", {}).get("parameters") or {}).get("modalities")
    if not record:
        return ""
    present, used = record.get("present") or [], record.get("used") or []
    absent = [m for m in ("t1", "t1ce", "t2", "flair") if m not in present]
    unused = [m for m in present if m not in used]
    text = f"present: {', '.join(present)}" + (f"; absent: {', '.join(absent)}" if absent else "")
    text += f"; not used by the model: {', '.join(unused)}" if unused else ""
    return f"<h3>Modalities</h3><p class='modalities'>{_esc(text)}</p>"


def model_section(data: CaseData, cards: dict[str, dict] | None = None) -> str:
    """Each model of provenance_predict.json with its card: read from the folder when it still exists,
    else from ``cards`` (model.json sha256 -> card: the report's --model folders, e.g. staged copies)."""
    from .errors import InputError
    from .model_card import read_card

    models = data.provenance.get("predict", {}).get("models") or []
    if not models:
        return ""
    parts = ["<h3>Model</h3><table class='models'><tr><th>model</th><th>training data</th><th>cases</th>"
             "<th>validation Dice</th><th>ET threshold</th></tr>"]
    for m in models:
        folder = m.get("folder", "")
        try:
            card = read_card(folder)
        except (InputError, OSError):
            card = (cards or {}).get(m.get("model_json_sha256", ""), {"et_threshold": m.get("et_threshold")})
        dice = card.get("val_dice") or {}
        val = ", ".join(f"{r} {v:.3f}" for r, v in dice.items() if v is not None) or "none"
        threshold = card.get("et_threshold")
        parts.append(f"<tr><td>{_esc(folder)}<br><small>{_esc(m.get('model_json_sha256', ''))[:16]}</small></td>"
                     f"<td>{_esc(card.get('source') or 'unknown')}</td><td>{_esc(card.get('n_cases') or 'unknown')}</td>"
                     f"<td>{_esc(val)}</td><td>{'not tuned' if threshold is None else _esc(f'{threshold} voxels')}</td></tr>")
    parts.append("</table>")
    return "\n".join(parts)


def render_case_page(data: CaseData, metrics: dict[str, float], flags: list[str],
                     cards: dict[str, dict] | None = None, atlas: Path | None = None) -> str:
    """The whole case page as one string (images inline as PNG); ``cards`` as for :func:`model_section`,
    ``atlas`` the atlas folder when provenance names one that is not there."""
    comp = fig.largest_component(data.labels)
    head = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_esc(data.case_id)} - gliocascade</title>"
            f"<style>{_CSS}</style></head><body><p><a href='../report.html'>cohort report</a></p>"
            f"<h1>{_esc(data.case_id)}</h1>")
    parts = [head]
    if flags:
        parts.append("<ul class='flags'>" + "".join(f"<li class='flag'>{_esc(f)}</li>" for f in flags) + "</ul>")
    warnings = data.warnings()
    if warnings:
        parts.append("<ul class='warnings'>" + "".join(f"<li class='warn'>{_esc(w)}</li>" for w in warnings) + "</ul>")
    parts += [images_section(data, comp), disagreement_section(data), preprocessing_section(data, comp, atlas),
              facts_section(data, metrics, cards), "</body></html>\n"]
    return "\n".join(p for p in parts if p)


def write_case_page(path: Path, page: str) -> Path:
    """Write the page atomically."""
    from .io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path

