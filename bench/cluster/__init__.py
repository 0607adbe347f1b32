"""`--executor ray`: a run's work as Ray tasks on a cluster (Ray itself is imported only
when joining one: a local run never imports it).

  auth.py      before joining: does the head answer without a token, does it take
               ours (Ray's GCS client in a child process); the one-line refusals
  connect.py   joining the cluster with token authentication (or starting a Ray
               instance here, on a loopback address) with Ray's usage statistics off and
               no dashboard; one-line errors for a bad address
  tasks.py     what runs on a node: a teacher, a method step, the node's description,
               its machine probe, a measuring job (its files arrive through the object
               store and its figures go back the same way)
  executor.py  RayExecutor: teachers per seed and every chain's steps as tasks with
               resource requests (CPUs, or a GPU with --device cuda), independent ones at
               once; results saved into the run directory as they arrive
  station.py   RayStation: measurements on the nodes that hold --measure-on's resource,
               one at a time per node, a backend's rows on one node; a lost node is
               replaced where another holds the resource, else its rows fail naming it

The search's Ray Tune trials are bench.search.ray_tune (the search sits above the cluster).
"""

from bench.cluster.executor import RayExecutor

__all__ = ["RayExecutor"]
