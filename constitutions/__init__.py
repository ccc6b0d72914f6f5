"""Constitutions that ship with critic (YAML), packaged as data."""
