"""What a run produces and who reads it: the typed row and its columns (`row`), the run
directory (`store`), the manifest (`manifest`), and the views over rows: the CI gate
(`gate`), `bench compare` (`compare`), the summary across seeds (`seeds`) and the
console table (`console`).
"""
