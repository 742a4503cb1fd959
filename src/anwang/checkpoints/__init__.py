"""Checkpoints: what roadside cameras read, starting with licence-plate rules."""
