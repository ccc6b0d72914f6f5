"""Jinja2 prompt templates that ship with critic, packaged as data."""
