"""End-to-end rendering of a fixture results tree: table cells, notes, Markdown/PDF parity, idempotency."""
from __future__ import annotations

import json
import math
import re
import shutil
import statistics
from pathlib import Path

import pytest
from scipy.stats import t as t_dist

from benchmark.train.config_files import profile_report_note
from benchmark.report.__main__ import main
from fixtures.report_factory import write_register, write_run

pypdf = pytest.importorskip("pypdf", reason="pypdf is needed to read the PDF text (requirements-test.txt)")

NAN = float("nan")
EXCERPT = Path(__file__).parents[1] / "fixtures" / "unimatch_logs" / "pascal_meanIOU_excerpt.log"

# best-on-val mIoU per seed; the expected cells below are computed from these with statistics.*
BEST_92 = {"supervised": [45.0, 46.0, 47.5], "unimatch": [75.0, 74.2, 76.1], "fixmatch": [70.0, NAN],
           "s4mim": [76.3], "maskmatch": [NAN, NAN]}
BEST_183 = {"supervised": [55.5], "unimatch": [77.0, 78.0]}
S4MIM_COMPONENTS = {"class_wise": True, "feat_agg": True, "semantic_mim": True}


def expected_cell(values: list[float]) -> str:
    finite = [v for v in values if not math.isnan(v)]
    n_nan = len(values) - len(finite)
    if not finite:
        return "NaN (diverged)"
    mean = statistics.fmean(finite)
    core = f"{mean:.2f}"
    if len(finite) > 1:
        half = t_dist.ppf(0.975, len(finite) - 1) * statistics.stdev(finite) / math.sqrt(len(finite))
        core += f" ± {statistics.stdev(finite):.2f} [{mean - half:.2f}, {mean + half:.2f}]"
    return f"{core} (n={len(finite)}" + (f"; {n_nan} NaN excl.)" if n_nan else ")")


def build_tree(results: Path) -> None:
    for split, table in (("92", BEST_92), ("183", BEST_183)):
        for method, values in table.items():
            for seed, best in enumerate(values):
                comps = S4MIM_COMPONENTS if method == "s4mim" else {}
                last = best - 1.0 if not math.isnan(best) else NAN
                # As the trainer records them: method params without the `method.` prefix, including the
                # ones a profile sets for every run of the method (not a change of any variant).
                overrides = {"patch_size": 32} if method == "maskmatch" else {}
                write_run(results, "pascal", split, method, seed, best, last, components=comps,
                          overrides=overrides, config_extra={"mask_ratio": 0.7} if method == "maskmatch" else None)
    for seed, best in enumerate([72.0, 73.0]):
        write_run(results, "pascal", "92", "s4mim", seed, best, variant="no_class_wise",
                  components={**S4MIM_COMPONENTS, "class_wise": False})
    for ratio, vals in ((0.5, [71.0, 71.4]), (0.9, [69.0, 69.6])):
        for seed, best in enumerate(vals):
            write_run(results, "pascal", "92", "maskmatch", seed, best, variant=f"method.mask_ratio={ratio}",
                      overrides={"patch_size": 32, "mask_ratio": ratio})
    for seed in (0, 1):   # runs of the default profile; the note the profile file sets reaches the report once
        folder = results / "runs" / "pascal" / "92" / "unimatch" / f"seed{seed}"
        summary = json.loads((folder / "summary.json").read_text())
        (folder / "summary.json").write_text(json.dumps({**summary, "profile": "default"}))
        # written by older code: a note copied into the run's config is no longer read
        (folder / "config.yaml").write_text((folder / "config.yaml").read_text() +
                                            "output: {report_note: Trained at a toy budget.}\n")
    broken = results / "runs" / "pascal" / "92" / "fixmatch" / "seed7"
    broken.mkdir(parents=True)
    (broken / "summary.json").write_text('{"dataset": "pascal", ')       # truncated write
    write_register(results / "interpretations.yaml")
    assert main(["--results", str(results), "import-log", str(EXCERPT), "--split", "92",
                 "--name", "UniMatch official (run 1)"]) == 0


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    results, out = root / "results", root / "reports"
    build_tree(results)
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "stale-from-old-results.png").write_bytes(b"old")
    rc = main(["--results", str(results), "--out", str(out), "--register", str(results / "interpretations.yaml")])
    assert rc == 0
    md = (out / "report.md").read_text()
    pdf_text = "\n".join(p.extract_text() for p in pypdf.PdfReader(out / "report.pdf").pages)
    return {"results": results, "out": out, "md": md, "pdf": pdf_text}


def md_table(md: str, caption_part: str) -> list[dict[str, str]]:
    """Rows of the Markdown table whose caption contains `caption_part`, as {column: cell} with ** removed."""
    start = md.index(caption_part)
    lines = md[start:].splitlines()
    first = next(i for i, l in enumerate(lines) if l.startswith("|"))
    block = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        block.append([c.strip() for c in line.strip("|").split(" | ")])
    header, body = block[0], block[2:]
    return [dict(zip(header, (c.replace("**", "").strip() for c in row))) for row in body]


def row(table, first_col_value):
    return next(r for r in table if next(iter(r.values())) == first_col_value)


def test_outputs_exist_and_stale_figures_removed(rendered):
    out = rendered["out"]
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    figs = {p.name for p in (out / "figures").glob("*.png")}
    assert "stale-from-old-results.png" not in figs
    for name in ("main_pascal.png", "per_class_pascal_92.png", "curves_pascal_92.png", "ablation_pascal_s4mim.png",
                 "sweep_pascal_maskmatch_method-mask_ratio.png", "reference_curves_pascal_92.png"):
        assert name in figs
    assert (out / "tables" / "per_class_pascal_92.csv").exists()
    assert not list(out.rglob(".*.tmp")) and not list(out.rglob(".report*"))   # no temp files left


def test_main_table_mean_std_missing_nan_and_one_seed(rendered):
    best = md_table(rendered["md"], "pascal: best-on-val mIoU")
    assert row(best, "Supervised")["92"] == expected_cell(BEST_92["supervised"])
    assert row(best, "UniMatch")["92"] == expected_cell(BEST_92["unimatch"])
    assert row(best, "FixMatch")["92"] == "70.00 (n=1; 1 NaN excl.)"          # NaN seed excluded, counted
    assert row(best, "MaskMatch†")["92"] == "NaN (diverged)"
    assert row(best, "S4MIM†")["92"] == "76.30 (n=1)"                          # one seed: no ±
    assert row(best, "FixMatch")["183"] == "—"                                   # missing cell
    assert row(best, "UniMatch")["183"] == expected_cell(BEST_183["unimatch"])
    assert row(best, "UniMatch official (run 1) ‡")["92"] == "75.46 (n=1)"
    last = md_table(rendered["md"], "pascal: last-iteration mIoU")
    assert row(last, "Supervised")["92"] == expected_cell([v - 1.0 for v in BEST_92["supervised"]])
    md = rendered["md"]
    assert "**76.30 (n=1)**" in md                      # best in column 92 is marked
    assert "— = no run for this method and split" in md
    assert "runs: FixMatch 92 seed 1; MaskMatch 92 seed 0; MaskMatch 92 seed 1" in md


def test_profile_note_is_shown_once_under_its_dataset(rendered):
    md, note = rendered["md"], profile_report_note("default")
    assert note.startswith("Embedded CPU profile") and md.count(note) == 1
    assert md.index("Dataset: pascal") < md.index(note) < md.index("Table 1.")
    assert "Embedded CPU profile" in rendered["pdf"]
    assert "Trained at a toy budget." not in md    # the profile file's note, not the copy in old runs' configs


def test_significance_vs_baselines(rendered):
    from scipy import stats
    sig = md_table(rendered["md"], "significance of best-on-val differences")
    p = stats.ttest_ind(BEST_92["unimatch"], BEST_92["supervised"], equal_var=False).pvalue
    delta = statistics.fmean(BEST_92["unimatch"]) - statistics.fmean(BEST_92["supervised"])
    cell = next(r for r in sig if r["Comparison"] == "UniMatch vs Supervised" and r["Split"] == "92")
    assert cell["Δ"] == f"{delta:+.2f}" and cell["Test"] == "Welch, 3 vs 3 seeds"   # no draws recorded
    assert cell["p"] == (f"{p:.3f}" if p >= 0.001 else "<0.001")
    tested = [r for r in sig if r["p"] != "—"]
    assert len(tested) == 1 and cell["p (Holm)"] == cell["p"] + "*"   # a family of one: Holm leaves p alone
    s4 = [r for r in sig if r["Comparison"].startswith("S4MIM†") and r["Split"] == "92"]
    assert [r["Test"] for r in s4] == ["not enough seeds"] * 2
    assert "Welch's t-test" in rendered["md"] and "Data draws: not recorded by these runs" in rendered["md"]


def test_published_vs_reproduced(rendered):
    pub = md_table(rendered["md"], "pascal: published vs reproduced")
    s4 = [r for r in pub if r["Method"] == "S4MIM†"]
    assert s4 and all(r["Published"] == "not available" and r["Δ"] == "not available" for r in s4)
    mm = [r for r in pub if r["Method"] == "MaskMatch†"]
    assert mm and all(r["Published"] == "not available" for r in mm)
    uni = next(r for r in pub if r["Method"] == "UniMatch" and r["Split"] == "92")
    assert uni["Published"] == "75.20"
    assert uni["Δ"] == f"{statistics.fmean(BEST_92['unimatch']) - 75.2:+.2f}"
    assert uni["Official log"] == "75.46"
    assert next(r for r in pub if r["Method"] == "UniMatch" and r["Split"] == "366")["Reproduced"] == "—"


def test_ablation_table_and_register(rendered):
    md = rendered["md"]
    abl = md_table(md, "ablation of S4MIM")
    variant = row(abl, "no_class_wise")
    assert variant["Change"] == "class_wise off"
    assert variant["92"] == expected_cell([72.0, 73.0])
    assert variant["Δ 92"].startswith(f"{72.5 - 76.3:+.2f} (not enough seeds)")
    sweep = md_table(md, "ablation of MaskMatch")
    assert row(sweep, "method.mask_ratio=0.5")["Change"] == "method.mask_ratio=0.5"   # patch_size: not a change
    reg = md_table(md, "Interpretation register")
    assert {r["ID"] for r in reg} == {"S4MIM-1", "MM-1"}
    assert "our implementation from the paper's description" in md


def test_skipped_folder_is_named(rendered):
    md = rendered["md"]
    assert "runs/pascal/92/fixmatch/seed7" in md and "not valid JSON" in md
    assert "runs/pascal/92/fixmatch/seed7" in rendered["pdf"]


def test_pdf_carries_the_markdown_numbers(rendered):
    md, pdf = rendered["md"], rendered["pdf"]
    for caption in ("pascal: best-on-val mIoU", "pascal: last-iteration mIoU"):
        for r in md_table(md, caption):
            for cell in list(r.values())[1:]:
                # the PDF sets a cell's interval on a second line; the Markdown joins it with a space
                for part in cell.replace(" [", "\n[").split("\n"):
                    assert part in pdf, f"{part!r} of {cell!r} from the Markdown table is missing in the PDF"
    for text in ("NaN (diverged)", "not available", "75.46 (n=1)", "our implementation from the paper's description",
                 "S4MIM-1"):
        assert text in pdf


def test_rerendering_is_idempotent(rendered, tmp_path):
    out2 = tmp_path / "again"
    args = ["--results", str(rendered["results"]), "--register", str(rendered["results"] / "interpretations.yaml")]
    assert main(args + ["--out", str(out2)]) == 0
    first = {p.relative_to(rendered["out"]): p.read_bytes() for p in rendered["out"].rglob("*") if p.is_file()}
    second = {p.relative_to(out2): p.read_bytes() for p in out2.rglob("*") if p.is_file()}
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


def test_register_missing_is_reported(rendered, tmp_path):
    out = tmp_path / "noreg"
    results = tmp_path / "results"
    shutil.copytree(rendered["results"] / "runs" / "pascal" / "183", results / "runs" / "pascal" / "183")
    assert main(["--results", str(results), "--out", str(out), "--register", str(tmp_path / "absent.yaml")]) == 0
    md = (out / "report.md").read_text()
    assert "register not found" in md
    assert re.search(r"\| Supervised\s+\| 55\.50 \(n=1\)", md)


def test_ablation_delta_compares_the_variant_with_the_full_method_on_the_same_seeds(tmp_path):
    from benchmark.report.ablation import ablation_groups, ablation_table
    from benchmark.report.document import Numbering
    from benchmark.report.results_store import load_results
    for seed, best in enumerate([40.0, 50.0, 60.0]):   # the grid's seeds; the ablation ran only seed 0
        write_run(tmp_path, "pascal", "92", "s4mim", seed, best, components=S4MIM_COMPONENTS)
    write_run(tmp_path, "pascal", "92", "s4mim", 0, 45.0, variant="no_class_wise",
              components={**S4MIM_COMPONENTS, "class_wise": False})
    group, = ablation_groups(load_results(tmp_path).runs)
    table = ablation_table(group, Numbering())
    variant = next(r for r in table.rows if r[0] == "no_class_wise")
    assert variant[3].startswith("+5.00")   # 45 - 40 (seed 0), not 45 - 50 (the mean over seeds 0-2)
