"""Small helpers shared across the package (shape checks, seeding, atomic file writes)."""
