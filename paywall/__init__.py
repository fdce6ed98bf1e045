"""farthing.paywall."""
