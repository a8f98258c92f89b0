"""`make bench`: the speed targets (issues 3, 13, 15, 26), measured side by side in one run here.

Measuring tools kept beside the code they measure, outside the installed package. One module per
part, named as `--only` names it (`cli.PARTS` in table order, the opt-in peers last, whose
studies in other tools live in `peer_scripts/`), each saying what it measures and why; `common`
holds the targets, the table and the helpers the parts share, `cli` the registry of parts and
the command line. Not a test: it prints a markdown table with PASS/FAIL per target and writes it
to --out. Run it as `python -m benchmarks [--only ...]` from the repo root (`make bench`) or
`python benchmarks/bench.py [--only ...]` from anywhere.
"""
