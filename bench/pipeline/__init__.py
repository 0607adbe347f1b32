"""One run as its stages: `runner` (data -> teacher -> method chains -> exports ->
measurements -> report), `executors` (where the work runs), `artifacts` (the teacher,
baselines and chains), `export` (every model on every backend) and `resume` (a killed
run's saved steps and exports).
"""
