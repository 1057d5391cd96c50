"""The training and evaluation harness shared by every method."""
