"""The spec layer: what a run is before it runs. The config schema (`schema`) and its validation
(`validate`), a cell's identity (`cell`: axes, name, key, folder) and its record on disk (`record`:
`summary.json`). `cell` and `record` import no torch: the analysis and the sweep's report read them."""
