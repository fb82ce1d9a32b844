"""The sweep layer: a command as a whole. `check` composes and validates every cell before any starts;
`report` announces what the cells' folders hold and reports the sweep when it ends."""
