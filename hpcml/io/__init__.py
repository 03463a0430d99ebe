"""Readers and writers of the input formats."""
