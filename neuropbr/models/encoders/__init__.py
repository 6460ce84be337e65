"""Per-view feature extractors: any timm backbone, or a from-scratch U-Net encoder."""
