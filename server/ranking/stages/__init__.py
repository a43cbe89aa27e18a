"""One file per stage of a ranking; server/ranking/build.py puts them in order."""
