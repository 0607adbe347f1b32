"""What a run produces and who reads it: the typed row and its columns (`row`), the run
directory (`store`), each stage's outputs saved once, keyed, for a resumed run (`saved`),
the manifest (`manifest`) and the machines it describes (`machines`), and the views over
rows: the CI gate (`gate`, its baseline file `baseline`), `bench compare` (`compare`,
`compare_text`), the summary across seeds (`seeds`) and the console table (`console`).
"""
