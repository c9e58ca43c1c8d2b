"""The fault rig: ``make up``'s servers on free ports, real worker processes, and the faults
``make chaos`` (bench/chaos.py) reports on; tests/chaos runs a short selection of them."""
