"""Candidates from the whole catalogue: vector search, lexical search, and the
catalogue index they share, built off the request path when the item cache is."""
