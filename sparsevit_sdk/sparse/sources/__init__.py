"""One module per source library: ``NAME``, ``SUPPORTED``, ``matches(module)`` and ``convert(module)``,
which swaps the module's Swin stages for sparse ones in place and returns its SparseSwin view."""
