"""The run's configuration: its sections and defaults (`sections`), the layering of
defaults < preset < profile < command line and every check of bad input (`settings`),
and the named setups (`presets`).
"""
