"""Trainer add-ons named in YAML configs: atomic checkpoint IO, RNG resume state, prediction CSV."""
