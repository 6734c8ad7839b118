"""Reports rendered from results files only (never training logs).

`python -m benchmark.report` reads `results/runs/**/summary.json` (+ `metrics.jsonl`, `config.yaml`) and
`results/references/**.json` (official logs imported with `python -m benchmark.report import-log`), builds one
document model (`document.py`) and renders it twice, to Markdown and to PDF, so both carry the same numbers.
This package imports neither `datasets` nor `methods` nor torch: a report must render on any machine that has
the results folder.
"""
