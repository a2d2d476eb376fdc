"""Feature indexes on disk: build and query (:mod:`.feature_index`), the manifest
(:mod:`.manifest`), memory-mapped shard files (:mod:`.shard_files`), builds split into parts
and merged (:mod:`.parts`), and optional FAISS search (:mod:`.ann`).

Importing the package is cheap; import the module you need (``feature_index`` needs torch).
"""
