"""Report rendering: the run directory's rows and predictions into HTML (and plots).
`run` reads the run directory, `sections` decides what each part of the page shows,
`tables` lays out its tables, `figures`, `curves` and `plots` draw, `provenance` says
where the figures came from, `format` writes each number (Jinja filters), `html`
assembles the page, `browser` opens it in headless Chromium.
"""
