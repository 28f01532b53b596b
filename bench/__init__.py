"""pathsteer benchmarks: each prints its figure next to an anchor measured in the same run.

The machine is shared and noisy, so an absolute number means little; the ratio to an anchor
taken minutes apart on the same machine is what to compare across runs.
Run all: ``make bench``; some: ``make bench BENCH="counters lab_throughput"``.
"""
