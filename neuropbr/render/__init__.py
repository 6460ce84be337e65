"""Differentiable metallic-roughness renderer: BRDF, colour, geometry, lights, cameras, artifacts."""
