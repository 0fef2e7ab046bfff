"""An alias kept for code written before the split: fastnn.model held the Sequential container
and the file format, which now live in fastnn.sequential and fastnn.io."""
from fastnn.io import FORMAT, atomic_savez, load, pack, read, save, unpack
from fastnn.sequential import Sequential, summary_table

__all__ = ["FORMAT", "Sequential", "atomic_savez", "load", "pack", "read", "save",
           "summary_table", "unpack"]
