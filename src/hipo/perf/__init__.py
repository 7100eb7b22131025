"""`hipo perf`: step time, useful tokens/s and peak memory of training variants, measured side by side."""
