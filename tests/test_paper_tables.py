"""Seeds combined into leaderboard rows, and the paper's tables written from run records."""
from __future__ import annotations

import pandas as pd
import pytest

from benchmark.leaderboard import (combine_seeds, record_path, reference, write_leaderboard,
                                   write_record)
from benchmark.tables import main as tables_main


def _record(method: str, seed: int, accuracy: float, reid: float, *, reversible=False,
            family=None) -> dict:
    scores = {"accuracy": {"value": accuracy, "ci_low": accuracy - 0.02,
                           "ci_high": accuracy + 0.02},
              "reid_top1_identity": {"value": reid, "ci_low": reid / 2, "ci_high": reid * 2},
              "reid_worst": {"value": 2 * reid, "ci_low": reid, "ci_high": 3 * reid}}
    if reversible:
        scores["recovery_psnr"] = {"value": 40.0 + seed, "ci_low": 39.0, "ci_high": 41.0}
    return {"method": method, "family": family or method, "reversible": reversible,
            "seed": seed, "scores": scores, "chance": {"reid_top1_identity": 0.01,
                                                        "reid_worst": 0.01},
            "clean": {"accuracy": {"value": 0.9}, "reid_top1_identity": {"value": 0.95}},
            "cost": {"peak_memory_mb": 10.0}, "profile": "toy", "n_test": 40,
            "dataset_fingerprint": "abc", "reid_worst_of": "parrot_top1_identity"}


@pytest.fixture
def leaderboard(tmp_path):
    records = [_record("blur", 0, 0.50, 0.20), _record("medsem_deid", 0, 0.80, 0.02,
                                                        reversible=True),
               _record("medsem_deid", 1, 0.84, 0.04, reversible=True),
               _record("medsem_deid", 2, 0.82, 0.03, reversible=True),
               _record("medsem_deid_noprior", 0, 0.60, 0.05, reversible=True,
                       family="medsem_deid_noprior")]
    for r in records:
        write_record(record_path(tmp_path, "mema", r["method"], r["seed"]), r)
    return tmp_path, records


def test_seeds_combine_into_mean_std_and_per_seed_values(leaderboard):
    output, records = leaderboard
    rows = {r["method"]: r for r in combine_seeds(records)}
    assert rows["medsem_deid"]["seeds"] == [0, 1, 2]
    accuracy = rows["medsem_deid"]["scores"]["accuracy"]
    assert accuracy["value"] == pytest.approx(0.82)
    assert accuracy["std"] == pytest.approx(0.02)
    assert accuracy["per_seed"] == [0.80, 0.84, 0.82]
    assert rows["blur"]["scores"]["accuracy"]["std"] is None  # one seed: no spread

    csv_path, md_path = write_leaderboard(output, "mema")
    frame = pd.read_csv(csv_path).set_index("method")
    assert frame.loc["medsem_deid", "n_seeds"] == 3
    assert frame.loc["medsem_deid", "accuracy_per_seed"] == "0.8;0.84;0.82"
    md = md_path.read_text()
    assert "82.0 ± 2.0" in md          # three seeds: mean ± std
    assert "50.0 [48.0, 52.0]" in md   # one seed: value [CI]


def test_the_clean_reference_is_averaged_over_the_seeds_evaluators(leaderboard):
    """Each seed trains its own evaluators: the clean row is their mean, not the last seed's."""
    _, records = leaderboard
    records = [dict(r, clean={"accuracy": {"value": 0.8 + 0.05 * r["seed"]}}) for r in records]
    ref = reference(records)
    assert ref["clean"]["accuracy"]["value"] == pytest.approx(0.85)  # seeds 0, 1, 2
    assert ref["clean"]["accuracy"]["per_seed"] == pytest.approx([0.8, 0.85, 0.9])
    assert ref["chance"] == records[0]["chance"]


def test_paper_tables_from_records(leaderboard):
    output, _ = leaderboard
    assert tables_main(["--output", str(output), "--paper"]) == 0
    folder = output / "paper" / "mema"
    main_md = (folder / "table1_main.md").read_text()
    # best per column in bold, in the declared direction: highest accuracy, lowest leakage
    assert "**82.0 ± 2.0**" in main_md and "**3.0 ± 1.0**" in main_md
    assert "| *clean (no-op)* |" in main_md and "| *chance* |" in main_md
    ablation = (folder / "table2_ablation.md").read_text()
    assert "medsem_deid_noprior" in ablation and "blur" not in ablation
    reversibility = (folder / "table3_reversibility.tex").read_text()
    assert r"\toprule" in reversibility and "recovery\\_psnr" in reversibility
    assert "blur" not in reversibility  # keyless, not reversible
    assert (folder / "frontier.pdf").read_bytes().startswith(b"%PDF")
    assert (folder / "frontier.png").stat().st_size > 0
    # regenerated from the same records: the same bytes (CI diffs them)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    tables_main(["--output", str(output), "--paper"])
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_compare_reproduction_within_seed_spread(leaderboard, tmp_path_factory):
    from benchmark.compare import main as compare_main

    committed, records = leaderboard
    rerun = tmp_path_factory.mktemp("rerun")
    for r in records:  # within the spread: one seed moves by less than its CI
        r = {**r, "scores": {**r["scores"], "accuracy": {
            **r["scores"]["accuracy"], "value": r["scores"]["accuracy"]["value"] + 0.01}}}
        write_record(record_path(rerun, "mema", r["method"], r["seed"]), r)
    assert compare_main([str(committed), str(rerun), "--dataset", "mema"]) == 0
    moved = records[0]  # blur, one seed: accuracy 0.50 [0.48, 0.52] -> 0.60
    moved = {**moved, "scores": {**moved["scores"], "accuracy": {"value": 0.60}}}
    write_record(record_path(rerun, "mema", moved["method"], moved["seed"]), moved)
    assert compare_main([str(committed), str(rerun), "--dataset", "mema"]) == 1


def test_readme_results_table_is_rewritten_between_its_markers(leaderboard):
    output, _ = leaderboard
    readme = output / "README.md"
    readme.write_text("intro\n<!-- results:mema -->\nstale typed row\n<!-- /results -->\nrest\n")
    assert tables_main(["--output", str(output), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n<!-- results:mema -->") and text.endswith("<!-- /results -->\nrest\n")
    assert "stale typed row" not in text
    rows = [line.split(" | ")[0].strip("| ") for line in text.splitlines()
            if line.startswith("| ") and "seeds" not in line]
    # worst case first (lowest reid_worst), references beneath
    assert rows == ["medsem_deid", "medsem_deid_noprior", "blur", "*clean (no-op)*", "*chance*"]
    readme.write_text("<!-- results:mema -->\nno end marker\n")
    with pytest.raises(ValueError, match="no closing"):
        tables_main(["--output", str(output), "--readme", str(readme)])
