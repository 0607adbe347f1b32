"""Measuring, the bench's side: fresh worker processes per (model, backend), and the rows
they become. What runs inside those processes is bench.child (with the Job / ProcessResult
records both sides read).

  launch.py   starting a process (fork server or new interpreter) on a job file, reading
              its results file; the machine probe
  station.py  where processes run (this machine: LocalStation), NodeLost
  plan.py     the measuring plan: first pass, teacher twice, the adaptive pass
  session.py  what the plan holds while it runs (every row's state, the machines)
  rounds.py   one round of fresh processes: the job, the station running it, each
              result folded into its row, stored and kept
  kept_rows.py a row's processes kept after each one, restored by a resumed run
  rows.py     a row's parts (processes, quality, teacher) and the one step that builds
              the Result from them
"""

from bench.measuring.plan import measure_all
from bench.measuring.rows import PARITY_BATCH, PARITY_TOLERANCE_FP32, Target
from bench.measuring.session import Paths

__all__ = ["Paths", "measure_all", "PARITY_BATCH", "PARITY_TOLERANCE_FP32", "Target"]
