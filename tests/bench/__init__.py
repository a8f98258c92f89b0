"""`benchmarks/` on tiny sizes, a file per part: each runs, measures what it says, the table reads.

No timing assertions: the numbers depend on a shared machine; `make bench` is the measurement.
"""

TINY = ("experiment=tiny",)
