"""Neighbourhoods of point clouds under a group distance: the searches (:mod:`.search`: ball and
kNN over all pairs, farthest point sampling), the cell list for Euclidean and position-bounded
distances (:mod:`.cell_list`), and the all-pairs neighbourhood (:mod:`.dense`). The functions take
the adapter first and use only its primitives; they import no adapter module."""
