"""The shared training loop."""
