"""The cohort page's case table: one row per case, sortable by clicking a header, linking to case pages.

The page must stay light for cohorts of hundreds of cases, so a row holds numbers, flags, warnings
and one small thumbnail; the sorting is a few lines of inline JavaScript (no network). The page
also sorts itself on load from ``?sort=<column>&desc=1``, so a headless browser can check the
sort with ``--dump-dom`` alone. Empty cells sort last in both directions.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field

import pandas as pd

from .labels import REGIONS

SORT_JS = """(function(){
var t=document.getElementById('cases');if(!t)return;
function key(td){var v=td.getAttribute('data-v');if(v===null)v=td.textContent;if(v==='')return null;
var n=parseFloat(v);return isNaN(n)?[1,v.toLowerCase()]:[0,n];}
function cmp(a,b){if(a[0]!==b[0])return a[0]-b[0];return a[1]<b[1]?-1:(a[1]>b[1]?1:0);}
function sortBy(i,desc){var body=t.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
rows.sort(function(r,s){var a=key(r.cells[i]),b=key(s.cells[i]);
if(a===null||b===null)return (a===null)-(b===null);var c=cmp(a,b);return desc?-c:c;});
rows.forEach(function(r){body.appendChild(r);});
Array.prototype.forEach.call(t.tHead.rows[0].cells,function(h,j){
h.setAttribute('aria-sort',j===i?(desc?'descending':'ascending'):'none');});
t.setAttribute('data-sorted',t.tHead.rows[0].cells[i].getAttribute('data-col')+(desc?' desc':' asc'));}
Array.prototype.forEach.call(t.tHead.rows[0].cells,function(h,i){h.addEventListener('click',function(){
sortBy(i,h.getAttribute('aria-sort')==='ascending');});});
var q=new URLSearchParams(window.location.search),col=q.get('sort');
if(col){Array.prototype.forEach.call(t.tHead.rows[0].cells,function(h,i){
if(h.getAttribute('data-col')===col)sortBy(i,q.get('desc')==='1');});}
})();"""

TABLE_CSS = """.wrap{max-width:100%;max-height:80vh;overflow:auto;border:1px solid #ddd}#cases{font-size:11px}
#cases th{cursor:pointer;position:sticky;top:0;white-space:nowrap}#cases td.flags{min-width:14em;max-width:24em;
text-align:left;color:#a00}#cases td.warn{max-width:22em;text-align:left;color:#a60;font-size:10px}
#cases img{width:48px;height:48px}"""


@dataclass
class CaseRow:
    """What the cohort table shows of one case beyond its metrics."""

    case_id: str
    thumbnail: str | None = None  # base64 PNG
    page: str | None = None       # relative link to the case page
    flags: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# Official lesion-wise column stems -> (title, unit).
LESION_TITLES = {"lesionwise_dsc_mean": ("lesion-wise Dice", ""), "lesionwise_hd95_mean": ("lesion-wise HD95", " (mm)"),
                 "lesionwise_nsd_mean": ("lesion-wise NSD", ""), "all_instance_tp": ("lesions TP", ""),
                 "all_instance_fp": ("lesions FP", ""), "all_instance_fn": ("lesions FN", "")}


def column_title(column: str) -> str:
    """A metrics column as a header with its unit: ``hd95_WT`` -> ``HD95 WT (mm)``."""
    metric, _, region = column.rpartition("_")
    lesion = LESION_TITLES.get(metric)
    if lesion is not None:  # the official lesion-wise columns (lesion_metrics.py), lower-case regions
        return f"{lesion[0]} {region.upper()}{lesion[1]}"
    if region not in REGIONS:
        return column
    names = {"dice": "Dice", "hd95": "HD95", "sensitivity": "sensitivity", "specificity": "specificity",
             "volume_pred_ml": "volume pred", "volume_ref_ml": "volume ref"}
    unit = " (mm)" if metric == "hd95" else (" (mL)" if metric.endswith("_ml") else "")
    return f"{names.get(metric, metric)} {region}{unit}"


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def case_table(cohort: pd.DataFrame, rows: list[CaseRow]) -> str:
    """The sortable table: thumbnail, case (link), flags, warnings, then every metric column."""
    metrics = [c for c in cohort.columns if c != "case_id"]
    by_id = {str(r["case_id"]): r for _, r in cohort.iterrows()}
    head = ["<th data-col='thumbnail'>image</th>", "<th data-col='case_id'>case</th>",
            "<th data-col='flags'>QC flags</th>", "<th data-col='warnings'>warnings</th>"]
    head += [f"<th data-col='{_esc(c)}'>{_esc(column_title(c))}</th>" for c in metrics]
    body = []
    for row in rows:
        thumb = (f"<img alt='{_esc(row.case_id)} thumbnail' src='data:image/png;base64,{row.thumbnail}'>"
                 if row.thumbnail else "")
        name = (f"<a href='{_esc(row.page)}'>{_esc(row.case_id)}</a>" if row.page else _esc(row.case_id))
        cells = [f"<td data-v=''>{thumb}</td>", f"<td class='l' data-v='{_esc(row.case_id)}'>{name}</td>",
                 f"<td class='flags' data-v='{len(row.flags)}'>{'<br>'.join(_esc(f) for f in row.flags)}</td>",
                 f"<td class='warn' data-v='{len(row.warnings)}'>{'<br>'.join(_esc(w) for w in row.warnings)}</td>"]
        values = by_id.get(row.case_id)
        for c in metrics:
            v = None if values is None else values[c]
            cells.append("<td data-v=''></td>" if v is None or pd.isna(v) else f"<td data-v='{float(v)!r}'>{float(v):.4g}</td>")
        flagged = " class='flagged'" if row.flags else ""
        body.append(f"<tr id='{_esc(row.case_id)}'{flagged} data-flags='{len(row.flags)}'>{''.join(cells)}</tr>")
    return (f"<div class='wrap'><table id='cases'><thead><tr>{''.join(head)}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div><script>{SORT_JS}</script>")
