"""airspeed velocity (asv) benchmarks for mibench: speed (``time_``), memory (``peakmem_``) and
estimator accuracy (``track_``). Configured by ``asv.conf.json`` at the repository root; see the
"Regression tracking" in docs/development.md."""
