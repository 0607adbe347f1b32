"""Report rendering: the run directory's rows and predictions into HTML (and plots)."""
