"""Add-ons as ordinary charts: NeuVector, the SUSE Observability agent, insights; `gpu/`."""
