"""Collect the label-encoding experiments into JSON and a Markdown table (README, issue "A LAD teacher
that reads its label"): ``python collect.py LENGTH_RUN ABLATION_DIR OUT_DIR``; or
``python collect.py --rows ABLATION_DIR OUT_DIR VARIANT...`` to add or replace only those variants' rows
of ``OUT_DIR/ablation.json`` (the other rows and the length curve stay as they are).

- ``LENGTH_RUN``: the reference encoding's long teacher run; every validation's label-use gap.
- ``ABLATION_DIR``: one run folder per variant (``run_ablation.sh``); each variant's last validation
  on the held-out split, its seconds per step, and whether its label input reveals the class.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ladseg.engine.logging import read_metrics
from ladseg.methods.label_encoding import ENCODING_INFO

KINDS = {"supervised": None, "reference": "random_codes", "onehot": "onehot", "boundary": "boundary",
         "random_vectors": "random_vectors", "boundary_codes": "boundary_codes",
         "reference_drop30": "random_codes", "boundary_drop30": "boundary",
         "reference_branch": "random_codes", "reference_anneal": "random_codes"}  # fmt: skip


def length_curve(run: Path) -> list[dict[str, float]]:
    return [
        {
            "iter": r["iter"],
            "label_gap": r["label_gap"],
            "mIoU": r["mIoU"],
            "mIoU_no_label": r["mIoU_no_label"],
        }
        for r in read_metrics(run)
        if r["type"] == "val" and "label_gap" in r
    ]


def ablation_row(name: str, run: Path) -> dict[str, object] | None:
    records = list(read_metrics(run))
    vals = [r for r in records if r["type"] == "val"]
    steps = [r for r in records if r["type"] == "train" and r.get("s_per_iter")]
    if not vals:
        return None
    last = vals[-1]
    kind = KINDS.get(name)
    return {
        "variant": name,
        "iter": last["iter"],
        "mIoU": last["mIoU"],
        "mIoU_no_label": last.get("mIoU_no_label"),
        "label_gap": last.get("label_gap"),
        "s_per_iter": sum(r["s_per_iter"] for r in steps) / len(steps) if steps else None,
        "reveals_identity": None if kind is None else ENCODING_INFO[kind].reveals_identity,
    }


def main(length_run: str, ablation_dir: str, out_dir: str) -> None:
    out = Path(out_dir)
    curve = length_curve(Path(length_run))
    (out / "length_curve.json").write_text(json.dumps(curve, indent=1))
    rows = [r for d in sorted(Path(ablation_dir).iterdir()) if (r := ablation_row(d.name, d))]
    (out / "ablation.json").write_text(json.dumps(rows, indent=1))
    sup = next((r["mIoU"] for r in rows if r["variant"] == "supervised"), None)
    print(
        "| variant | iters | with label | zero label | gap | with label − supervised | s/step | reveals class |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:

        def f(v: object) -> str:
            return (
                "-"
                if v is None
                else f"{v:+.2f}"
                if isinstance(v, float) and v < 0
                else f"{v:.2f}"
                if isinstance(v, float)
                else str(v)
            )

        vs = None if sup is None or r["variant"] == "supervised" else r["mIoU"] - sup  # with its label
        print(
            f"| {r['variant']} | {r['iter']} | {f(r['mIoU'])} | {f(r['mIoU_no_label'])} | {f(r['label_gap'])} | "
            f"{'-' if vs is None else f'{vs:+.2f}'} | {f(r['s_per_iter'])} | {f(r['reveals_identity'])} |"
        )
    print("\nlength curve:", ", ".join(f"{c['iter']}: {c['label_gap']:+.2f}" for c in curve))


def update_rows(ablation_dir: str, out_dir: str, names: list[str]) -> None:
    """Add or replace the rows of ``names`` in ``OUT_DIR/ablation.json``, in the runs' name order."""
    path = Path(out_dir) / "ablation.json"
    rows = {r["variant"]: r for r in json.loads(path.read_text())}
    for name in names:
        row = ablation_row(name, Path(ablation_dir) / name)
        if row is None:
            raise SystemExit(f"{Path(ablation_dir) / name}: no validation yet")
        rows[name] = row
        print(json.dumps(row))
    path.write_text(json.dumps([rows[k] for k in sorted(rows)], indent=1))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rows"]:
        update_rows(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        main(*sys.argv[1:4])
