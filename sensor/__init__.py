"""cgsentry sensor: eBPF tracing, container attribution, record/replay, local response."""

__version__ = "0.1.0"
