"""Datasets over split lists, transforms and samplers."""
