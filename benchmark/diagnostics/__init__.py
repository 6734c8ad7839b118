"""Measurements about a run rather than results of one: step time and FLOPs, a cell's profile, data-pipeline
throughput, CPU numerics under every ISA cap and per operation across CPU models, pseudo-label quality, label
preservation under the strong view, the GPU check. Each is `python -m benchmark.diagnostics.<name>`.
"""
