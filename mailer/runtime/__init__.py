"""The worker process's runtime: building and running the worker (:mod:`.worker`), its health
endpoint (:mod:`.health_endpoint`), its gauges (:mod:`.gauges`) and the container probe
(:mod:`.probe`). ``worker.py`` at the top level is only its entry point."""
