"""Discriminators for adversarial training on the PBR map stack."""
