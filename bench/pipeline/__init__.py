"""One run as its stages: `runner` (data -> teacher -> method steps -> exports ->
measurements -> report, each taking what the one before produced), `executors` (where
the work runs), `artifacts` (the teacher, baselines and chains, each step made once),
`export` (every model on every backend), `saved_stages` (the steps and exports as
mappings of what was made, saved by bench.results.saved) and `resume` (whether a run
directory may be continued).
"""
