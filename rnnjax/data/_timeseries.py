"""Time series from CSV: columns read by name, calendar features, chronological splits, windows
and a scaler fitted on the training part only.

Reads the files of ``shared/data/timeseries`` as they are (CRLF or LF line endings, a quoted
header, no newline after the last row, ``.gz``) and refuses, in one line naming the place, what
a forecaster cannot use: a missing value (``NA``, empty), a non-numeric cell, a column that does
not exist, fewer rows than one window plus the horizon.

Shapes: N time steps, F features, W window (past steps the model sees), K horizon.
"""

import csv
import dataclasses
import gzip
import io
import math
import os

import numpy as np

from rnnjax.data._errors import DataError

CALENDAR_FEATURES = ("month", "day_of_year")


@dataclasses.dataclass(frozen=True, eq=False)
class TimeSeries:
    """Columns of a CSV in file order.

    Attributes:
      values: ``[N, F]`` float64, the requested columns in the requested order.
      columns: the F column names.
      dates: the N cells of the date column as written (``"1949-01"``, ``"1981-01-01"``), or
        ``None`` when no date column was asked for.
    """

    values: np.ndarray
    columns: tuple
    dates: tuple | None

    def __len__(self) -> int:
        return len(self.values)


def read_series(path: str, columns, *, date_column: str | None = None) -> TimeSeries:
    """Reads the numeric ``columns`` (and optionally a date column) of a CSV with a header.

    Args:
      path: the file (plain or ``.gz``).
      columns: one column name or a sequence of names; the features, in this order.
      date_column: a column of ``YYYY-MM`` or ``YYYY-MM-DD`` dates, for calendar features.

    Returns:
      A ``TimeSeries`` with ``values [N, F]``.

    Raises:
      DataError: a missing or unreadable file, no rows, an unknown column (the message lists the
        header), a row with too few cells, a missing value (``NA``, ``NaN``, empty) or a cell that
        is not a number (the message names the row, counted from 1 after the header, and column).
    """
    columns = (columns,) if isinstance(columns, str) else tuple(columns)
    if not columns:
        raise DataError("columns must name at least one column, got none")
    if not os.path.isfile(path):
        raise DataError(f"time-series file not found: {path!r}")
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read time-series file {path!r}: {e}") from None
    rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    if len(rows) < 2:
        raise DataError(f"{path!r} has no data rows: expected a header line and values")
    header = [name.strip() for name in rows[0]]
    wanted = (*columns, date_column) if date_column is not None else columns
    for name in wanted:
        if name not in header:
            raise DataError(f"{path!r} has no column {name!r} (header: {header})")
    indices = [header.index(name) for name in columns]
    values = np.empty((len(rows) - 1, len(columns)), np.float64)
    for r, row in enumerate(rows[1:], start=1):
        if len(row) < len(header):
            raise DataError(f"{path!r} row {r} has {len(row)} cells, the header has {len(header)}")
        for c, i in enumerate(indices):
            values[r - 1, c] = _number(row[i], path, r, columns[c])
    dates = None
    if date_column is not None:
        dates = tuple(row[header.index(date_column)].strip() for row in rows[1:])
    return TimeSeries(values, columns, dates)


def _number(cell: str, path: str, row: int, column: str) -> float:
    cell = cell.strip()
    try:
        value = float(cell)
    except ValueError:
        value = None
    if cell.upper() in ("", "NA", "NAN", "N/A", "NULL") or (
        value is not None and math.isnan(value)
    ):
        raise DataError(f"{path!r} row {row} column {column!r}: missing value {cell!r}")
    if value is None or math.isinf(value):
        raise DataError(f"{path!r} row {row} column {column!r}: {cell!r} is not a number")
    return value


def calendar_features(dates, kinds=("month",)) -> np.ndarray:
    """``[N, 2 * len(kinds)]`` sin and cos of the position in the year of each date.

    Args:
      dates: N strings ``YYYY-MM`` (month only) or ``YYYY-MM-DD``.
      kinds: any of ``"month"`` (month of year, period 12) and ``"day_of_year"`` (period 365.25;
        needs days).

    Raises:
      DataError: an unknown kind, or a date that does not parse.
    """
    columns = []
    for kind in kinds:
        if kind not in CALENDAR_FEATURES:
            raise DataError(f"calendar feature must be one of {CALENDAR_FEATURES}, got {kind!r}")
        phase = np.array([_phase(d, kind) for d in dates], np.float64) * 2 * np.pi
        columns += [np.sin(phase), np.cos(phase)]
    return np.stack(columns, axis=1) if columns else np.zeros((len(dates), 0))


def _phase(date: str, kind: str) -> float:
    """The fraction of the year elapsed at ``date``, in [0, 1)."""
    try:
        day = np.datetime64(date, "D")
    except ValueError:
        raise DataError(f"date {date!r} is not YYYY-MM or YYYY-MM-DD") from None
    year_start = day.astype("datetime64[Y]")
    if kind == "month":
        return float((day.astype("datetime64[M]") - year_start).astype(int)) / 12.0
    return float((day - year_start.astype("datetime64[D]")).astype(int)) / 365.25


@dataclasses.dataclass(frozen=True)
class Split:
    """Chronological parts of a series: ``[0, valid_start)`` trains, ``[valid_start,
    test_start)`` validates, ``[test_start, N)`` tests (targets; inputs may reach back)."""

    valid_start: int
    test_start: int
    length: int


def chronological_split(length: int, test_size: int, valid_size: int) -> Split:
    """The last ``test_size`` steps test, the ``valid_size`` before them validate.

    Raises:
      DataError: sizes that are not positive or leave no training part.
    """
    for name, value in (("test_size", test_size), ("valid_size", valid_size)):
        if not isinstance(value, int | np.integer) or value < 1:
            raise DataError(f"{name} must be a positive int, got {value!r}")
    if test_size + valid_size >= length:
        raise DataError(
            f"test_size {test_size} + valid_size {valid_size} leave no training part of a "
            f"series of {length} steps"
        )
    return Split(length - test_size - valid_size, length - test_size, length)


def check_window(length: int, window: int, horizon: int) -> None:
    """``DataError`` unless a series of ``length`` steps holds one ``window`` plus ``horizon``."""
    for name, value in (("window", window), ("horizon", horizon)):
        if not isinstance(value, int | np.integer) or value < 1:
            raise DataError(f"{name} must be a positive int, got {value!r}")
    if length < window + horizon:
        raise DataError(
            f"the series has {length} rows, fewer than one window of {window} plus the horizon "
            f"of {horizon} ({window + horizon})"
        )


def window_origins(start: int, stop: int, window: int, horizon: int, first: int = 0):
    """``[M]`` forecast origins ``t`` (the first forecast step) whose targets ``[t, t + K)`` lie
    in ``[start, stop)`` and whose inputs ``[t - W, t)`` start at ``first`` or later (the first
    row with inputs: the lag of a differenced series)."""
    return np.arange(max(start, first + window), stop - horizon + 1)


def make_windows(inputs: np.ndarray, targets: np.ndarray, origins, window: int, horizon: int):
    """Input windows and target blocks at the given forecast origins.

    Args:
      inputs: ``[N, F]`` features the model reads.
      targets: ``[N]`` the forecast quantity.
      origins: ``[M]`` forecast origins (``window_origins``).

    Returns:
      ``(x [M, W, F], y [M, K])`` with ``x[m] = inputs[t - W : t]`` and ``y[m] = targets[t :
      t + K]`` for ``t = origins[m]``.
    """
    origins = np.asarray(origins)
    past = origins[:, None] + np.arange(-window, 0)[None, :]
    future = origins[:, None] + np.arange(horizon)[None, :]
    return inputs[past], targets[future]


@dataclasses.dataclass(frozen=True)
class Scaler:
    """Per-feature standardisation ``(x - mean) / scale``, fitted on the training part only."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> "Scaler":
        """From ``values [N, F]`` (or ``[N]``): mean and standard deviation (1 where it is 0)."""
        values = np.asarray(values, np.float64)
        if not len(values):
            raise DataError("cannot fit a scaler on an empty training part")
        scale = values.std(axis=0)
        return cls(values.mean(axis=0), np.where(scale > 0, scale, 1.0))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, np.float64) - self.mean) / self.scale

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, np.float64) * self.scale + self.mean
