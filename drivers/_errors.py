"""Exceptions raised by every driver in :mod:`drivers`."""


class InstrumentError(Exception):
    """Base of every error an instrument driver raises."""


class NotConnected(InstrumentError):
    """The instrument does not answer: port or socket lost, or retries exhausted."""


class ProtocolError(InstrumentError):
    """The instrument answered, but the answer broke the protocol (framing, length, CRC, format)."""


class LimitError(InstrumentError, ValueError):
    """A requested value breaks a configured limit; nothing was sent to the instrument."""


class ReadbackMismatch(InstrumentError):
    """A written value read back differently from what was written."""
