"""farthing.contracts."""
