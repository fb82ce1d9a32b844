"""The cell layer: one cell's life above the training loop. `lifecycle` decides between dry run, skip,
reuse, retry and training; `reuse` copies a cell completed in another study; `lock` keeps one process
per cell."""
