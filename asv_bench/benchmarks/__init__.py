"""asv benchmarks for lieconv (see docs/benchmarks.md)."""
