"""farthing.wallet."""
