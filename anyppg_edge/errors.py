"""Exception types. Every error a user can trigger with bad input is one of these, with a message
that names what was wrong and what was expected."""

from __future__ import annotations


class AnyPPGError(Exception):
    """Base class of all anyppg-edge errors."""


class InvalidSignalError(AnyPPGError, ValueError):
    """A signal cannot be used: NaN/Inf, flat, saturated, too short, wrong rate, wrong shape or dtype."""


class DataFormatError(AnyPPGError, ValueError):
    """A recording file is missing, corrupt, or lacks a required channel."""


class CheckpointError(AnyPPGError, RuntimeError):
    """A checkpoint is truncated, unreadable, or its keys/shapes do not match the model."""


class ContractMismatchError(AnyPPGError, ValueError):
    """A model's input contract does not match the preprocessing configuration in use."""


class MissingFileError(DataFormatError, FileNotFoundError):
    """A file the user named does not exist."""


class UsageError(AnyPPGError, ValueError):
    """A command was called with flags that cannot work together or name nothing to do."""


class MissingExtraError(AnyPPGError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


class ToolchainError(AnyPPGError, RuntimeError):
    """An external build tool or emulator (arm-none-eabi-gcc, make, qemu) failed, or the program it
    built exited with an error; the message carries the tool's own output."""


class ConfigError(AnyPPGError, ValueError):
    """A configuration value (a flag, a config file, a dataclass field) is out of range or unknown."""


class UnknownNameError(AnyPPGError, KeyError):
    """A name (registered model, MCU class, recording) is not known; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""
