"""Data planes: program a decision (`Desired`) into the kernel FIB or the BPF fast path."""
