"""Tooling around the library: the cross-backend consistency table (:mod:`.consistency`) and the
glibc allocator helper for benchmarks (:mod:`.malloc`). Nothing in the library imports these."""
