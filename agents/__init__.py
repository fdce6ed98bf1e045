"""farthing.agents."""
