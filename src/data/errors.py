"""The two kinds of problems a benchmark can have (shared by every format module)."""


class BenchmarkError(Exception):
    """File-level problem; str(e) is one clear paragraph naming the file (and category/pair/field)."""


class InvalidPair(Exception):
    """Per-pair problem; the message names file, category, pair id and field."""
