"""Backends behind one interface (installed as samedge.runtimes)."""
