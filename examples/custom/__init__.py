"""A worked example of your own model and data (see the README, "Your own model and data")."""
