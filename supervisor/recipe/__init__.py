"""Recipes: the YAML a user writes -> a validated `Recipe`, with every problem located."""
