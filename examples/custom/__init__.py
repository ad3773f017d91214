"""A worked example of your own model and data (see docs/custom-model-and-data.md)."""
