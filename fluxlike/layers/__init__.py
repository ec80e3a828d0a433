"""Layers: one file per family. The public names are re-exported by `fluxlike`."""
