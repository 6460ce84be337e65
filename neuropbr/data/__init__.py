"""Datasets and loading: the folder dataset (the guide's layout), synthetic data, split, cache."""
