"""Decoders from fused features to the four PBR maps."""
