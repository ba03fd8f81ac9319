"""Read-model definitions."""
