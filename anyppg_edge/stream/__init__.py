"""Streaming side of the toolkit (issue 6): the emulated watch sensor (:mod:`.sensor`), the streaming
10 s windowed preprocessor a watch/phone port mirrors (:mod:`.streamer`) and the replay that feeds
its windows to an encoder and checks them against the offline reference (:mod:`.replay`).

Only numpy/scipy are needed for the sensor and the streamer; the replay imports the runtimes it uses.
"""

from anyppg_edge.stream.sensor import (
    Burst,
    SensorConfig,
    SensorEmulator,
    SensorRun,
    SensorTrace,
    emulate,
    fault_config,
)
from anyppg_edge.stream.streamer import (
    FLAG_DRIFT,
    FLAG_FLAT,
    FLAG_GAP,
    FLAG_INTERPOLATED,
    FLAG_NAN,
    FLAG_OVERFLOW,
    FLAG_RESET,
    FLAG_SATURATION,
    HARD_FLAGS,
    StreamConfig,
    Streamer,
    StreamWindow,
    check_sensor_rate,
    flag_names,
    offline_windows,
    stream_windows,
)

__all__ = [
    "FLAG_DRIFT",
    "FLAG_FLAT",
    "FLAG_GAP",
    "FLAG_INTERPOLATED",
    "FLAG_NAN",
    "FLAG_OVERFLOW",
    "FLAG_RESET",
    "FLAG_SATURATION",
    "HARD_FLAGS",
    "Burst",
    "SensorConfig",
    "SensorEmulator",
    "SensorRun",
    "SensorTrace",
    "StreamConfig",
    "StreamWindow",
    "Streamer",
    "check_sensor_rate",
    "emulate",
    "fault_config",
    "flag_names",
    "offline_windows",
    "stream_windows",
]
