"""Host-side firmware harness (issue 6): emulated watch sensor FIFOs and the streaming 10 s windowed
preprocessing, validated against the offline reference chain and the float model. Depends on
``anyppg_edge``; never imported by it. Not built yet."""
