"""The annotators' side: a local labelling app, its durable label store, the
active-learning queue, import/export to other labelling tools and label-quality checks.

Labels live in a SQLite store (labels/store.sqlite, WAL, synchronous=FULL) and are
mirrored into labels/annotations.jsonl, the file `dvc repro` reads (by the app in batches).
"""
