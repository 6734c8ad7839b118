"""Reports rendered from results files only (never training logs).

`python -m benchmark.report` reads `results/runs/**/summary.json` (+ `metrics.jsonl`, `config.yaml`) and
`results/references/**.json` (official logs imported with `python -m benchmark.report import-log`), builds one
document model (`document.py`) and renders it twice, to Markdown and to PDF, so both carry the same numbers.
A report needs no data, checkpoint or accelerator: the results folder and this checkout (the method registry
for names, order and flags) are enough.
"""
