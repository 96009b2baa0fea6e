"""AlphaDB benchmark suite: `python -m benchmarks` (or `make bench`).

Every target is a ratio of two measurements taken in the same run on the same machine, so the
numbers mean something on a noisy shared host. See `benchmarks/__main__.py` for the list.
"""
