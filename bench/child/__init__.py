"""What runs inside the measuring processes, never in the bench's own: the per-backend
fork server (`forkserver`), the child that loads and times a model (`worker`), and the
instruments it uses: the timed loop (`timed_loop`), energy (`energy`), peak memory
(`memory`) and the machine probe (`machine`). `records` holds the immutable Job a process
runs and the ProcessResult it writes: the contract the bench side (bench.measuring) reads.
"""
