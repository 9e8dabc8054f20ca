"""Forecasting: a CSV time series -> a window-to-horizon recurrent forecaster.

Config: ``experiments/configs/forecast.py``. The series is split chronologically (train, then
validation, then test: ``rnnjax.data.chronological_split``); the target may be logged and
differenced (``data.difference``: lag 1 predicts the change over the last value, lag 12 over the
same month a year ago); the scaler is fitted on the training part only and saved in
``<workdir>/scaler.json``, which ``experiments.predict`` reuses. Evaluations report the
validation part in the series' own units, the final one the test part too.
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

import rnnjax
from experiments import config_cli
from experiments.tasks import _precision
from experiments.tasks._files import write_atomically
from rnnjax import data
from rnnjax.models import FORECAST_MODES, Forecaster, mae, mase, rmse

LAYERS = {"rnn": rnnjax.RNN, "lstm": rnnjax.LSTM, "gru": rnnjax.GRU}


@dataclasses.dataclass(frozen=True, eq=False)
class ForecastData:
    """A series ready for the model.

    Attributes:
      actual: ``[N]`` the target in its own units.
      level: ``[N]`` the target after the log (if any): what differencing is undone against.
      inputs: ``[N, I]`` float32 model inputs: the scaled (differenced) target, the scaled extra
        columns, then the calendar features; rows before ``first`` are NaN.
      scaler: fitted on the training rows of the differenced columns.
      split: where validation and test start; ``None`` for inference data.
      first: the first row with inputs (the differencing lag).
    """

    actual: np.ndarray | None
    level: np.ndarray | None
    inputs: np.ndarray | None
    scaler: data.Scaler
    split: data.Split | None
    first: int
    dates: tuple | None = None


def validate(config) -> None:
    """Raises ``ConfigError`` for forecasting fields that cannot run."""
    config_cli.check_positive_ints(
        config, "model.hidden_size", "model.num_layers", "data.window", "data.horizon",
        "data.test_size", "data.valid_size", "data.max_ar_order", "data.mase_season", "ensemble",
    )  # fmt: skip
    config_cli.check_choice(config, "model.cell", tuple(LAYERS))
    _precision.validate(config)
    config_cli.check_choice(config, "model.mode", FORECAST_MODES)
    config_cli.check_range(config, "model.dropout", 0.0, 1.0)
    if not config.data.path:
        raise config_cli.ConfigError("set config.data.path (a CSV file with a header)")
    for kind in config.data.calendar:
        if kind not in data.CALENDAR_FEATURES:
            raise config_cli.ConfigError(
                f"config.data.calendar entries must be in {data.CALENDAR_FEATURES}, got {kind!r}"
            )
    if config.data.calendar and not config.data.date_column:
        raise config_cli.ConfigError("config.data.calendar needs config.data.date_column")
    if config.model.mode == "autoregressive" and config.data.extra_columns:
        raise config_cli.ConfigError(
            "an autoregressive forecaster cannot feed back config.data.extra_columns (their "
            "future is unknown): use model.mode='direct'"
        )
    for path, value in (
        ("data.difference", config.data.difference),
        ("data.season", config.data.season),
        ("model.skip_window", config.model.skip_window),
    ):
        if not isinstance(value, int) or value < 0:
            raise config_cli.ConfigError(f"config.{path} must be an int >= 0, got {value!r}")


def input_size(config) -> int:
    return 1 + len(config.data.extra_columns) + 2 * len(config.data.calendar)


def _read(config, path: str) -> data.TimeSeries:
    d = config.data
    columns = (d.column, *d.extra_columns)
    return data.read_series(path, columns, date_column=d.date_column or None)


def _transform(config, series: data.TimeSeries, scaler: data.Scaler | None, fit_stop: int = 0):
    """``(level, inputs, scaler)``: log, difference, scale (fitting on rows before
    ``fit_stop`` when no scaler is given) and calendar features."""
    d = config.data
    level = series.values[:, 0].copy()
    if d.log:
        if level.min() <= 0:
            raise data.DataError(
                f"config.data.log needs positive values of {d.column!r}, got {level.min()}"
            )
        level = np.log(level)
    columns = np.concatenate([level[:, None], series.values[:, 1:]], axis=1)
    lag = d.difference
    if lag:
        columns[lag:, 0] = level[lag:] - level[:-lag]
        columns[:lag] = np.nan
    if scaler is None:
        scaler = data.Scaler.fit(columns[lag:fit_stop])
    features = [scaler.transform(columns)]
    if d.calendar:
        features.append(data.calendar_features(series.dates, tuple(d.calendar)))
    return level, np.concatenate(features, axis=1).astype(np.float32), scaler


def load_data(config, workdir: str) -> ForecastData:
    """The series, split; the scaler from the training part (saved, or reused on resume)."""
    d = config.data
    series = _read(config, d.path)
    data.check_window(len(series), d.window, d.horizon)
    split = data.chronological_split(len(series), d.test_size, d.valid_size)
    if split.valid_start - d.difference < d.window + d.horizon:
        raise data.DataError(
            f"the training part [0, {split.valid_start}) of {d.path!r} holds no window: it needs "
            f"difference {d.difference} + window {d.window} + horizon {d.horizon} steps"
        )
    scaler_file = os.path.join(workdir, "scaler.json")
    scaler = _read_scaler(scaler_file) if os.path.exists(scaler_file) else None
    level, inputs, scaler = _transform(config, series, scaler, split.valid_start)
    if not os.path.exists(scaler_file):
        saved = {"mean": scaler.mean.tolist(), "scale": scaler.scale.tolist()}
        write_atomically(scaler_file, json.dumps(saved))
    return ForecastData(series.values[:, 0], level, inputs, scaler, split, d.difference,
                        series.dates)  # fmt: skip


def load_inference_data(config, workdir: str) -> ForecastData:
    scaler = _read_scaler(os.path.join(workdir, "scaler.json"))
    return ForecastData(None, None, None, scaler, None, config.data.difference)


def _read_scaler(path: str) -> data.Scaler:
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        return data.Scaler(np.asarray(saved["mean"]), np.asarray(saved["scale"]))
    except (OSError, ValueError, KeyError) as e:
        raise data.DataError(f"cannot read the run's scaler {path!r}: {e}") from None


def origins(config, d: ForecastData, start: int, stop: int) -> np.ndarray:
    """Forecast origins whose K targets lie in ``[start, stop)`` and whose window has inputs."""
    return data.window_origins(start, stop, config.data.window, config.data.horizon, d.first)


def train_origins(config, d: ForecastData) -> np.ndarray:
    return origins(config, d, 0, d.split.valid_start)


def valid_origins(config, d: ForecastData) -> np.ndarray:
    return origins(config, d, d.split.valid_start, d.split.test_start)


def test_origins(config, d: ForecastData) -> np.ndarray:
    return origins(config, d, d.split.test_start, d.split.length)


def describe(d: ForecastData) -> str:
    s = d.split
    return (
        f"{s.length} steps: train [0, {s.valid_start}), validation [{s.valid_start}, "
        f"{s.test_start}), test [{s.test_start}, {s.length}); {d.inputs.shape[1]} input features"
    )


def tokens_per_step(config) -> int:
    return config.batch_size  # windows: tok/s in the console line reads windows/s


def build_model(config, d: ForecastData) -> Forecaster:
    m = config.model
    dropout = m.dropout if m.num_layers > 1 else 0.0
    layer = LAYERS[m.cell](m.hidden_size, m.num_layers, dropout=dropout)
    return Forecaster(
        _precision.layer(config, layer),
        input_size(config),
        config.data.horizon,
        mode=m.mode,
        head_sizes=tuple(m.head_sizes),
        skip_window=m.skip_window,
        dropout=m.dropout,
    )


def initial_carry(config, model):
    return ()


def _batch(config, d: ForecastData, at: np.ndarray) -> dict:
    w, k = config.data.window, config.data.horizon
    x, y = data.make_windows(d.inputs, d.inputs[:, 0], at, w, k)
    future = d.inputs[at[:, None] + np.arange(k)[None, :], 1 + len(config.data.extra_columns) :]
    return {"inputs": x, "future": future, "targets": y}


def train_batch(config, d: ForecastData, step: int) -> dict:
    """A pure function of (seed, step): ``batch_size`` windows drawn from the training part."""
    candidates = train_origins(config, d)
    rng = np.random.default_rng((config.seed, step))
    return _batch(config, d, candidates[rng.integers(len(candidates), size=config.batch_size)])


def make_loss_fn(config, model: Forecaster):
    """Mean squared error of the K scaled (differenced) targets."""

    def loss_fn(params, carry, batch, key):
        prediction = model.apply(params, batch["inputs"], batch["future"], dropout_key=key)
        return jnp.mean((prediction - batch["targets"]) ** 2), (carry, {})

    return loss_fn


def make_apply(model: Forecaster):
    """Jitted ``apply(params, inputs, future) -> [B, K]``, without dropout."""
    return jax.jit(model.apply)


def undo_transform(config, d: ForecastData, level, at, scaled) -> np.ndarray:
    """Model outputs ``[M, K]`` (scaled, differenced, logged) -> the series' units.

    ``level`` is the logged series the differences are added to (known before each origin)."""
    out = np.asarray(scaled, np.float64) * d.scaler.scale[0] + d.scaler.mean[0]
    lag = config.data.difference
    if lag:
        for k in range(out.shape[1]):
            base = level[at + k - lag] if k < lag else out[:, k - lag]
            out[:, k] = out[:, k] + base
    return np.exp(out) if config.data.log else out


def forecast(config, apply, params, d: ForecastData, at: np.ndarray) -> np.ndarray:
    """``[M, K]`` forecasts from the origins ``at``, in the series' units."""
    batch = _batch(config, d, at)
    scaled = np.asarray(apply(params, batch["inputs"], batch["future"]))
    return undo_transform(config, d, d.level, at, scaled)


def targets(config, d: ForecastData, at: np.ndarray) -> np.ndarray:
    return d.actual[at[:, None] + np.arange(config.data.horizon)[None, :]]


def make_evaluator(config, model: Forecaster, d: ForecastData):
    """Validation loss (scaled MSE), RMSE and MAE in the series' units; the final evaluation adds
    the test part's RMSE, MAE and MASE (the comparison script computes the baselines)."""
    apply = make_apply(model)
    valid_at = valid_origins(config, d)
    valid_batch = _batch(config, d, valid_at)
    season = config.data.mase_season

    def evaluate(params, final: bool) -> dict:
        scaled = np.asarray(apply(params, valid_batch["inputs"], valid_batch["future"]))
        predicted = undo_transform(config, d, d.level, valid_at, scaled)
        actual = targets(config, d, valid_at)
        metrics = {
            "loss": float(np.mean((scaled - valid_batch["targets"]) ** 2)),
            "rmse": rmse(predicted, actual),
            "mae": mae(predicted, actual),
        }
        if final:
            at = test_origins(config, d)
            predicted = forecast(config, apply, params, d, at)
            actual = targets(config, d, at)
            metrics.update(
                test_rmse=rmse(predicted, actual),
                test_mae=mae(predicted, actual),
                test_mase=mase(predicted, actual, d.actual[: d.split.valid_start], season),
            )
        return metrics

    return evaluate


def make_show(config, model: Forecaster, d: ForecastData):
    """The forecast from the first validation origin next to what happened."""
    apply = make_apply(model)
    at = valid_origins(config, d)[:1]

    def show(params, step: int) -> str:
        del step
        predicted = forecast(config, apply, params, d, at)[0, :6]
        actual = targets(config, d, at)[0, :6]
        return (
            "forecast "
            + " ".join(f"{p:.2f}" for p in predicted)
            + " | actual "
            + " ".join(f"{a:.2f}" for a in actual)
        )

    return show


def next_dates(dates, count: int) -> list:
    """The ``count`` dates after the last one, at the same resolution (month or day)."""
    last = dates[-1]
    unit = "M" if len(last) == 7 else "D"
    start = np.datetime64(last, unit)
    return [str(start + k + 1) for k in range(count)]


def predict(config, model, params, d: ForecastData, input_path: str, output_path: str) -> str:
    """Writes the next ``horizon`` values after the history in ``input_path`` (a CSV with the
    run's columns; the last ``window + difference`` rows are read)."""
    c = config.data
    series = _read(config, input_path)
    needed, horizon = c.window + c.difference, c.horizon
    if len(series) < needed:
        raise data.DataError(
            f"{input_path!r} has {len(series)} rows; the model reads the last {needed} "
            f"(window {c.window} + difference {c.difference})"
        )
    # Placeholder rows for the forecast steps: only their calendar features are read.
    dates = next_dates(series.dates, horizon) if c.date_column else None
    extended = data.TimeSeries(
        np.concatenate([series.values, np.ones((horizon, series.values.shape[1]))]),
        series.columns,
        series.dates + tuple(dates) if dates else None,
    )
    level, inputs, _ = _transform(config, extended, d.scaler)
    prepared = dataclasses.replace(d, level=level, inputs=inputs)
    at = np.array([len(series)])
    values = forecast(config, make_apply(model), params, prepared, at)[0]
    labels = dates if dates is not None else [str(len(series) + k) for k in range(horizon)]
    head = c.date_column or "step"
    rows = "".join(f"{label},{value:.6g}\n" for label, value in zip(labels, values, strict=True))
    write_atomically(output_path, f"{head},{c.column}\n{rows}")
    return f"wrote the next {horizon} values of {c.column!r} after {len(series)} rows to " + (
        output_path
    )
