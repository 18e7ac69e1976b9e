"""The run's log: lines with a level, recorded on the execution. (`print`
goes to the log too, as stdout.)"""

from wit_world.imports import log as wit_log

_Level = wit_log.Level


def trace(message: str) -> None:
    wit_log.write(_Level.TRACE, str(message))


def debug(message: str) -> None:
    wit_log.write(_Level.DEBUG, str(message))


def info(message: str) -> None:
    wit_log.write(_Level.INFO, str(message))


def warn(message: str) -> None:
    wit_log.write(_Level.WARN, str(message))


def error(message: str) -> None:
    wit_log.write(_Level.ERROR, str(message))
