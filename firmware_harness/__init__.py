"""Firmware harness: emulated watch PPG sensors (ODR, ADC codes, FIFO watermark bursts, drift,
jitter, drops, saturation, resets) replayed through the streaming preprocessor and any exported
encoder, checked against the offline reference chain and the float model.

The emulator, streamer and replay live in :mod:`anyppg_edge.stream` (the main job uses them); this
package is the thin CLI (``python -m firmware_harness replay|summary|bench``) and the speed benchmark.
Depends on ``anyppg_edge``; never imported by it."""
