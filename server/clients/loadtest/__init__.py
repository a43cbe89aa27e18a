"""`shoprank loadtest`: a gRPC load generator for Rank.

scenario (what to send) -> generator (closed or open loop, on asyncio) ->
workers (one process or several) -> record (HDR histograms) -> report (JSON)
-> summary (ghz-shaped text), charts (PNG, HTML) and compare (a CI gate).
"""
