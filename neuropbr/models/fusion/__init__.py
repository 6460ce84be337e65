"""Cross-view fusion of the bottleneck features: ViT attention, mean and max pooling."""
