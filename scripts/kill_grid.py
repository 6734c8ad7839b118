"""Kill -9 the whole `run_all.sh` process group at random moments, rerun after each kill, and compare the end
result with an uninterrupted run: the report's tables (all but the compute table, whose times are measured
anew) and every summary.json metric must be identical.

    python scripts/kill_grid.py --kills 5 [--profile smoke] [--reference DIR] [--seed N] [--work DIR]

The last kill lands while the reports are being rendered. The slow test tests/grid/test_grid_kill.py runs it with
2 kills. Exit status 0 when everything matches, 1 with the differences listed otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Tables whose figures are measured anew by every session (wall and step times, peak memory).
MEASURED_TABLES = ("compute per run",)


def run_all_command(profile: str, results: Path) -> list[str]:
    return ["bash", str(REPO / "run_all.sh"), "--profile", profile, "--results-dir", str(results)]


def run_to_end(profile: str, results: Path, log: Path) -> int:
    with open(log, "a") as out:
        return subprocess.run(run_all_command(profile, results), stdout=out, stderr=subprocess.STDOUT,
                              cwd=REPO).returncode


def run_and_kill(profile: str, results: Path, log: Path, after_s: float | None, during_report: bool) -> str:
    """Start the grid in its own process group, SIGKILL the group `after_s` seconds in (or that long after the
    report rendering started); returns what was running when it was killed."""
    offset = log.stat().st_size if log.exists() else 0

    def new_output() -> str:
        with open(log, errors="replace") as f:
            f.seek(offset)
            return f.read()
    with open(log, "a") as out:
        proc = subprocess.Popen(run_all_command(profile, results), stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                start_new_session=True)
        start = time.monotonic()
        if during_report:
            while proc.poll() is None and "rendering reports:" not in new_output():
                time.sleep(0.2)
            start = time.monotonic()
        while proc.poll() is None and time.monotonic() - start < (after_s or 0):
            time.sleep(0.1)
        if proc.poll() is not None:
            return f"finished before the kill (exit {proc.returncode})"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    rendering = "rendering reports:" in new_output()
    return f"killed {'during report rendering' if rendering else 'while cells ran'} after {after_s:.1f} s"


def tables(report_md: str) -> dict[str, str]:
    """Caption -> the table's Markdown lines, for the tables whose numbers come from results only."""
    found = {}
    for match in re.finditer(r"^\*\*(Table \d+\. [^\n]*)\*\*\n\n((?:\|[^\n]*\n)+)", report_md, flags=re.M):
        caption, body = match.group(1), match.group(2)
        if not any(m in caption for m in MEASURED_TABLES):
            found[caption] = body
    return found


def untimed(evaluation: dict | None) -> dict | None:
    """An evaluation without `elapsed_s` (the training time it was taken at, measured anew by a resume)."""
    return {k: v for k, v in evaluation.items() if k != "elapsed_s"} if evaluation else evaluation


def metrics(results: Path) -> dict[str, dict]:
    """Run folder -> its summary's status, metrics and the evaluation history."""
    out = {}
    for summary in sorted((results / "runs").rglob("summary.json")):
        s = json.loads(summary.read_text())
        history = [{k: r[k] for k in ("iter", "miou", "per_class")}
                   for r in map(json.loads, (summary.parent / "metrics.jsonl").read_text().splitlines())]
        out[str(summary.parent.relative_to(results))] = {
            "status": s["status"], "best": untimed(s["best"]), "last": untimed(s["last"]), "iters": s["iters"],
            "evaluations": s.get("evaluations"), "history": history}
    for pointer in sorted((results / "runs").rglob("same_run.json")):
        out[str(pointer.parent.relative_to(results))] = {"same_run": json.loads(pointer.read_text()).get("run")}
    return out


def render(results: Path, out: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-m", "benchmark.report", "--results", str(results), "--out", str(out)],
                   check=True, cwd=REPO, env=env, capture_output=True)
    return (out / "report.md").read_text()


def differences(reference: Path, killed: Path, work: Path) -> list[str]:
    """What differs between the uninterrupted and the killed grid (empty: identical). The reference report is
    rendered again here by this checkout, so both reports come from the same code."""
    problems = []
    ref_tables = tables(render(reference, work / "reference_report"))
    got_tables = tables((killed / "reports" / "report.md").read_text())
    if ref_tables.keys() != got_tables.keys():
        problems.append(f"tables differ: {sorted(ref_tables.keys() ^ got_tables.keys())}")
    problems += [f"table differs: {c}" for c in ref_tables if c in got_tables and ref_tables[c] != got_tables[c]]
    ref_m, got_m = metrics(reference), metrics(killed)
    if ref_m.keys() != got_m.keys():
        problems.append(f"run folders differ: {sorted(ref_m.keys() ^ got_m.keys())}")
    problems += [f"summary differs: {k}" for k in ref_m if k in got_m and ref_m[k] != got_m[k]]
    leftovers = [str(p) for p in killed.rglob(".*.tmp")] + [str(p) for p in (killed / "reports").rglob(".report.*")]
    problems += [f"temp file left: {p}" for p in leftovers]
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--profile", default="smoke")
    p.add_argument("--reference", type=Path, help="results of an uninterrupted run (default: run one first)")
    p.add_argument("--work", type=Path, help="scratch folder (default: a new temp folder)")
    p.add_argument("--seed", type=int, default=None, help="seed of the kill moments (default: random)")
    p.add_argument("--max-delay", type=float, default=40.0, help="latest kill moment after a start, in seconds")
    args = p.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="kill_grid."))
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    rng = random.Random(seed)
    log = work / "killed.log"
    reference = args.reference
    if reference is None:
        reference = work / "reference"
        if run_to_end(args.profile, reference, work / "reference.log") != 0:
            print(f"the uninterrupted run failed; see {work / 'reference.log'}", file=sys.stderr)
            return 1
    killed = work / "killed"
    began = time.monotonic()
    for k in range(args.kills):
        last = k == args.kills - 1
        delay = rng.uniform(0.5, 4.0) if last else rng.uniform(3.0, args.max_delay)
        with open(log, "a") as f:
            f.write(f"=== attempt {k + 1}\n")
        print(f"kill {k + 1}/{args.kills}: {run_and_kill(args.profile, killed, log, delay, during_report=last)}",
              flush=True)
    with open(log, "a") as f:
        f.write("=== final attempt\n")
    rc = run_to_end(args.profile, killed, log)
    print(f"final run: exit {rc}; {args.kills} kills and reruns took {time.monotonic() - began:.0f} s "
          f"(seed {seed}, work {work})", flush=True)
    problems = [f"final run exit {rc}"] if rc != 0 else []
    problems += differences(reference, killed, work)
    for line in problems:
        print(line)
    n_runs = len(metrics(killed))
    print(f"{'identical' if not problems else 'DIFFERENT'}: {n_runs} run folders, "
          f"{len(tables((killed / 'reports' / 'report.md').read_text()))} report tables compared")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
