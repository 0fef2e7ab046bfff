from hypothesis import settings

# Kernels are deterministic; a modest number of random configurations per property is plenty,
# and the naive oracles are slow Python loops.
settings.register_profile("fastnn", max_examples=60, deadline=None)
settings.load_profile("fastnn")

