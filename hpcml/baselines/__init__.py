"""The same jobs on other engines, for side-by-side comparisons (Spark MLlib)."""
