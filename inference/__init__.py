"""farthing.inference."""
