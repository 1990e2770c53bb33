"""The paper's tables, regenerated from run records alone (``python -m benchmark.tables
--paper``): for each dataset, in Markdown and LaTeX (booktabs),

- Table 1, the main comparison: every method's utility, naive and worst-case
  re-identification, naturalness and cost, best per column in bold (among the rows that hide
  someone: the no-op is a reference), with the clean and chance references as rows;
- Table 2, the MedSem-DeID ablation: every row of the ``medsem_deid`` family;
- Table 3, reversibility and key security of every reversible method;
- the privacy-utility frontier (naive and worst case) as PDF and PNG.

Cells are ``value [95% CI]`` for one seed and ``mean ± std`` over several (the ``seeds`` column
says how many); which way is better, the digits and percentages come from the score
declarations (:mod:`benchmark.scores`), never from this module.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from benchmark.leaderboard import leaderboard_frame, load_records, reference
from data.files import atomic_write
from benchmark.scores import ScoreSpec, declared, is_defined


@dataclass(frozen=True)
class PaperTable:
    name: str
    caption: str
    columns: tuple[str, ...]
    #: which leaderboard rows the table shows
    rows: Callable[[dict], bool]
    #: add the clean (no-op) and chance references as rows
    references: bool = False
    #: order of the rows: this score, best first (default: by method name)
    sort_by: str | None = None


TABLES = (
    PaperTable("table1_main", "Main comparison: medical utility, identity leakage (naive "
               "attack and worst case over attacks), naturalness and cost",
               ("accuracy", "macro_f1", "sign_f1", "kappa", "dice", "reid_top1_identity",
                "reid_worst", "kid", "images_per_s"), rows=lambda row: True, references=True),
    PaperTable("table2_ablation", "MedSem-DeID ablation",
               ("accuracy", "sign_f1", "kappa", "dice", "reid_top1_identity", "reid_worst",
                "linkage_top1_identity", "kid", "recovery_psnr"),
               rows=lambda row: str(row["family"]).startswith("medsem_deid")),
    PaperTable("table3_reversibility", "Reversibility and key security: recovery with the "
               "right key from the float tensor, an 8-bit PNG and a JPEG; a wrong key; "
               "linkage across keys",
               ("recovery_psnr_float", "recovery_psnr", "recovery_psnr_jpeg", "recovery_ssim",
                "recovery_reid_top1_identity", "wrongkey_reid_top1_identity", "key_diversity",
                "linkage_key_top1", "linkage_top1_identity"),
               rows=lambda row: bool(row["reversible"])),
)


#: the summary at the top of README.md (``python -m benchmark.tables --readme README.md``):
#: privacy worst case first, the naive attack beside it, then utility and naturalness
README_TABLE = PaperTable(
    "readme", "Table 1, key columns, worst case first: re-identification under the worst "
    "attack and the naive one, utility and naturalness (every column in the paper tables' "
    "`table1_main.md`)",
    ("reid_worst", "reid_top1_identity", "accuracy", "sign_f1", "dice", "kid"),
    rows=lambda row: True, references=True, sort_by="reid_worst")


def _competing(frame: pd.DataFrame, records: list[dict]) -> pd.Series:
    """Rows that compete for the best cell: a row whose naive re-identification is at the clean
    level hides no one (the no-op reference) and would win every utility column."""
    clean = (reference(records)["clean"].get("reid_top1_identity") or {}).get("value") \
        if records else None
    if not is_defined(clean) or "reid_top1_identity" not in frame:
        return pd.Series(True, index=frame.index)
    return ~(frame["reid_top1_identity"].astype(float) >= clean - 1e-9)


def _best(frame: pd.DataFrame, spec: ScoreSpec, competing: pd.Series) -> set[int]:
    """Positions of the best value of a column among the competing rows (ties included); none
    without a direction."""
    values = frame[spec.name][competing] if spec.name in frame else pd.Series(dtype=float)
    values = values[values.map(is_defined)].astype(float)
    if spec.higher_is_better is None or values.empty:
        return set()
    best = values.max() if spec.higher_is_better else values.min()
    return set(values.index[values == best])


def _arrow(spec: ScoreSpec, latex: bool) -> str:
    if spec.higher_is_better is None:
        return ""
    if latex:
        return r" $\uparrow$" if spec.higher_is_better else r" $\downarrow$"
    return " ↑" if spec.higher_is_better else " ↓"


def _table_cells(table: PaperTable, frame: pd.DataFrame, records: list[dict]
                 ) -> tuple[list[ScoreSpec], list[list[str]], list[list[str]], list[set[int]]]:
    """The table's score specs, body rows, reference rows and bold positions per column."""
    specs = declared()
    frame = frame[frame.apply(table.rows, axis=1)].reset_index(drop=True) \
        if len(frame) else frame
    if table.sort_by in frame:
        frame = frame.sort_values(table.sort_by, kind="stable",
                                  ascending=not specs[table.sort_by].higher_is_better
                                  ).reset_index(drop=True)
    columns = [specs[c] for c in table.columns
               if c in frame and frame[c].map(is_defined).any()]
    body = [[str(row["method"]), str(row["n_seeds"]), "yes" if row["reversible"] else "no"]
            + [spec.cell(row) for spec in columns] for row in frame.to_dict("records")]
    references = []
    if table.references and records:
        ref = reference(records)
        references = [
            ["clean (no-op)", "", ""] + [
                spec.format((ref["clean"].get(spec.name) or {}).get("value")) for spec in columns],
            ["chance", "", ""] + [spec.format(ref["chance"].get(spec.name)) for spec in columns],
        ]
    competing = _competing(frame, records)
    return columns, body, references, [_best(frame, spec, competing) for spec in columns]


def markdown(table: PaperTable, frame: pd.DataFrame, records: list[dict], dataset: str) -> str:
    columns, body, references, best = _table_cells(table, frame, records)
    header = ["method", "seeds", "reversible"] + [s.name + _arrow(s, False) for s in columns]
    lines = [f"**{table.caption}** ({dataset}).", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, cells in enumerate(body):
        cells = cells[:3] + [f"**{c}**" if i in best[j] else c for j, c in enumerate(cells[3:])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["| *" + cells[0] + "* | " + " | ".join(cells[1:]) + " |" for cells in references]
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, output: Path, dataset: str) -> bool:
    """Replace the text between ``<!-- results:<dataset> -->`` and ``<!-- /results -->`` in
    ``readme`` with :data:`README_TABLE` from the dataset's records; False when ``readme``
    has no such markers."""
    start, end = f"<!-- results:{dataset} -->", "<!-- /results -->"
    text = readme.read_text()
    if start not in text:
        return False
    head, rest = text.split(start, 1)
    if end not in rest:
        raise ValueError(f"{readme}: {start} has no closing {end}")
    records = load_records(output, dataset)
    table = markdown(README_TABLE, leaderboard_frame(records), records, dataset)
    note = ("<!-- generated by `python -m benchmark.tables --readme README.md` from the run "
            "records; do not edit -->")
    atomic_write(readme, f"{head}{start}\n{note}\n\n{table}\n{end}{rest.split(end, 1)[1]}")
    return True


def _tex(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"),
                          ("&", r"\&"), ("#", r"\#"), ("±", r"$\pm$"), ("–", "--")):
        text = text.replace(char, escaped)
    return text


def latex(table: PaperTable, frame: pd.DataFrame, records: list[dict], dataset: str) -> str:
    columns, body, references, best = _table_cells(table, frame, records)
    header = ["Method", "Seeds", "Rev."] + [_tex(s.name) + _arrow(s, True) for s in columns]
    lines = [r"\begin{table*}[t]", r"\centering", r"\small",
             rf"\caption{{{_tex(table.caption)} ({_tex(dataset)}).}}",
             rf"\label{{tab:{table.name}-{dataset}}}",
             r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(header) + r" \\", r"\midrule"]
    for i, cells in enumerate(body):
        cells = [_tex(c) for c in cells[:3]] + [
            rf"\textbf{{{_tex(c)}}}" if i in best[j] else _tex(c)
            for j, c in enumerate(cells[3:])]
        lines.append(" & ".join(cells) + r" \\")
    if references:
        lines.append(r"\midrule")
        lines += [r"\textit{" + _tex(cells[0]) + "} & " + " & ".join(map(_tex, cells[1:]))
                  + r" \\" for cells in references]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table*}"]
    return "\n".join(lines) + "\n"


def write_paper_tables(output: Path, dataset: str) -> list[Path]:
    """Write ``<output>/paper/<dataset>/<table>.md`` and ``.tex`` for every table that has
    rows, and the frontier figure as PDF and PNG; returns the files written."""
    from benchmark.tables import write_frontier

    records = load_records(output, dataset)
    if not records:
        return []
    frame = leaderboard_frame(records)
    folder = Path(output) / "paper" / dataset
    written = []
    for table in TABLES:
        if not (len(frame) and frame.apply(table.rows, axis=1).any()):
            continue
        for suffix, render in ((".md", markdown), (".tex", latex)):
            path = folder / f"{table.name}{suffix}"
            atomic_write(path, render(table, frame, records, dataset))
            written.append(path)
    for suffix in (".pdf", ".png"):
        path = write_frontier(output, dataset, folder / f"frontier{suffix}")
        if path:
            written.append(path)
    return written
