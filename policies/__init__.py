"""Curation policies: what tools may read, write, spend and export."""
