"""Backbones and building blocks shared by the methods."""
