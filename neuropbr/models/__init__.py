"""The multi-view generator (encoder -> fusion -> decoder) and the discriminators."""
