"""What every driver of one Modbus unit offers about its link, written once (controllers and sensors)."""

from __future__ import annotations

from typing import Self

from ._modbus import LinkBase

__all__ = ["ModbusUnitDriver"]


class ModbusUnitDriver:
    """The link of a driver of one Modbus unit: its line counters, reconnect, close, and use in ``with``."""

    _link: LinkBase

    @property
    def line_counters(self) -> dict[str, int]:
        """What the line rules discarded or refused so far (diagnostics; decision 0039)."""
        return dict(self._link.line_counters())

    def reconnect(self) -> None:
        """Close and reopen the port or connection (``NotConnected`` if it is still gone)."""
        self._link.open()

    def close(self) -> None:
        """Leave the port (the last unit on a shared bus closes it). The instrument keeps running on its own."""
        self._link.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
