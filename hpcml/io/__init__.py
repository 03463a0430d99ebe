"""Readers and writers for the data formats hpcml consumes and produces."""
