"""The run's configuration: its sections and defaults (`sections`), the layering of
defaults < preset < profile < command line and `validate` (`settings`), every check of
bad input (`checks`), the --quick and --rigorous profiles (`profiles`) and the named
setups (`presets`).
"""
