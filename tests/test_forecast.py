"""Forecasting: the CSV reader and its one-line errors, train-only scaling, the baselines against
hand-computed values, the forecaster learning a sine in both modes, and the ``tiny`` preset
through the trainer, the comparison and ``experiments.predict``."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnjax
from experiments import config_cli, forecast_compare, predict
from experiments.configs import forecast as forecast_configs
from experiments.tasks import forecast
from rnnjax import data, models

ROOT = pathlib.Path(__file__).resolve().parents[1]
AIRLINE = ROOT.parent / "shared" / "data" / "timeseries" / "airline-passengers.csv"


def _write_csv(path, values, header='"Month","Passengers"', crlf=True):
    months = [f"{1949 + i // 12}-{i % 12 + 1:02d}" for i in range(len(values))]
    end = "\r\n" if crlf else "\n"
    lines = [header] + [f'"{m}",{v}' for m, v in zip(months, values, strict=True)]
    path.write_bytes(end.join(lines).encode())  # no newline after the last row, like the data
    return str(path)


def _config(path, preset="tiny", **changes):
    config = forecast_configs.get_config(preset)
    config.data.path = str(path)
    for name, value in changes.items():
        target = config
        *parents, last = name.split(".")
        for parent in parents:
            target = target[parent]
        target[last] = value
    return config


def test_reads_crlf_quoted_csv_and_calendar_features(tmp_path):
    path = _write_csv(tmp_path / "a.csv", [112, 118.5, 132])
    series = data.read_series(path, "Passengers", date_column="Month")
    assert series.values[:, 0].tolist() == [112, 118.5, 132] and series.columns == ("Passengers",)
    assert series.dates == ("1949-01", "1949-02", "1949-03")
    calendar = data.calendar_features(series.dates, ("month",))
    np.testing.assert_allclose(calendar[1], [np.sin(np.pi / 6), np.cos(np.pi / 6)], atol=1e-12)
    days = data.calendar_features(["1981-01-01", "1981-07-02"], ("day_of_year",))
    np.testing.assert_allclose(days[:, 1], [1.0, np.cos(2 * np.pi * 182 / 365.25)], atol=1e-12)
    real = data.read_series(str(AIRLINE), "Passengers", date_column="Month")
    assert len(real) == 144 and real.values[-1, 0] == 432 and real.dates[-1] == "1960-12"


@pytest.mark.parametrize(
    ("values", "changes", "message"),
    [
        ([1, "NA", 3] + [4] * 60, {}, "row 2 column 'Passengers': missing value 'NA'"),
        ([1, "", 3] + [4] * 60, {}, "row 2 column 'Passengers': missing value ''"),
        ([1, 2, "12a"] + [4] * 60, {}, "row 3 column 'Passengers': '12a' is not a number"),
        ([1] * 60, {"data.column": "Pasengers"}, "has no column 'Pasengers' (header: "),
        ([1] * 20, {}, "the series has 20 rows, fewer than one window of 12 plus the horizon"),
        ([1] * 30, {}, "the training part [0, 6) of "),
        ([1] * 60, {"data.horizon": 0}, "horizon must be a positive int, got 0"),
    ],
)
def test_bad_csv_input_gives_one_line_naming_it(tmp_path, values, changes, message):
    config = _config(_write_csv(tmp_path / "bad.csv", values), **changes)
    with pytest.raises(data.DataError) as error:
        forecast.load_data(config, str(tmp_path))
    assert message in str(error.value) and "\n" not in str(error.value)
    if "data.horizon" in changes:  # the trainer's config check says it first
        with pytest.raises(config_cli.ConfigError, match="config.data.horizon must be a positive"):
            config_cli.validate(config)


def test_scaler_is_fitted_on_training_part_only(tmp_path):
    rng = np.random.default_rng(0)
    values = np.round(100 + np.cumsum(rng.normal(size=120)), 3)
    changed = values.copy()
    changed[-24:] += np.arange(24) ** 1.5  # validation and test parts only
    config = _config(tmp_path / "a.csv")
    parts = []
    for name, series in (("a", values), ("b", changed)):
        config.data.path = _write_csv(tmp_path / f"{name}.csv", series.tolist())
        workdir = tmp_path / name
        workdir.mkdir()
        parts.append(forecast.load_data(config, str(workdir)))
    first, second = parts
    np.testing.assert_array_equal(first.scaler.mean, second.scaler.mean)
    np.testing.assert_array_equal(first.scaler.scale, second.scaler.scale)
    for step in range(3):
        a, b = (forecast.train_batch(config, d, step) for d in parts)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(first.inputs[-12:], second.inputs[-12:])
    lag = config.data.difference
    train = np.log(values[: first.split.valid_start])
    np.testing.assert_allclose(first.scaler.mean[0], np.mean(train[lag:] - train[:-lag]))


def test_baselines_and_metrics_match_hand_computed_values():
    series = np.array([1.0, 2.0, 4.0, 7.0, 11.0, 16.0])
    np.testing.assert_array_equal(models.persistence(series, [4, 5], 2), [[7, 7], [11, 11]])
    # season 2, origin 4: steps 4, 5, 6 take the values at 2, 3 and again 2
    np.testing.assert_array_equal(models.seasonal_naive(series, [4], 3, 2), [[4, 7, 4]])
    assert models.rmse([1, 2], [2, 4]) == pytest.approx(np.sqrt(2.5))
    assert models.mae([1, 2], [2, 4]) == pytest.approx(1.5)
    assert models.mase([1, 2], [2, 4], [1, 3, 2, 5]) == pytest.approx(1.5 / 2)
    assert models.mase([1, 2], [2, 4], [1, 3, 2, 5], season=2) == pytest.approx(1.5 / 1.5)

    exact = [1.0]  # y_t = 1 + 0.5 y_{t-1}: least squares recovers it exactly
    for _ in range(9):
        exact.append(1 + 0.5 * exact[-1])
    ar = models.fit_ar(exact, 1)
    assert ar.intercept == pytest.approx(1.0) and ar.coef.tolist() == pytest.approx([0.5])
    np.testing.assert_allclose(models.ar_forecast(ar, exact, [3], 2), [[exact[3], exact[4]]])


def test_ar_fit_and_order_choice_against_a_plain_loop():
    rng = np.random.default_rng(1)
    y = [0.0, 0.0]
    for _ in range(200):
        y.append(1 + 0.6 * y[-1] - 0.3 * y[-2] + rng.normal())
    y = np.array(y)
    rows = [[1.0, y[t - 1], y[t - 2]] for t in range(2, 150)]
    gram = sum(np.outer(r, r) for r in rows)
    moment = sum(np.array(r) * y[t] for r, t in zip(rows, range(2, 150), strict=True))
    expected = np.linalg.solve(gram, moment)
    ar = models.fit_ar(y, 2, stop=150)
    np.testing.assert_allclose([ar.intercept, *ar.coef], expected, rtol=1e-9)
    history = [y[159], y[158]]
    one = expected[0] + expected[1] * history[0] + expected[2] * history[1]
    step2 = expected[0] + expected[1] * one + expected[2] * history[0]
    np.testing.assert_allclose(models.ar_forecast(ar, y, [160], 2), [[one, step2]], rtol=1e-12)
    origins = np.arange(150, 190)
    errors = [
        models.rmse(models.ar_forecast(models.fit_ar(y, p, 150), y, origins, 1), y[origins, None])
        for p in range(1, 7)
    ]
    assert models.choose_ar_order(y, 6, 150, origins, 1) == int(np.argmin(errors)) + 1


@pytest.mark.parametrize("mode", ["direct", "autoregressive"])
def test_forecaster_learns_a_sine(mode):
    y = np.sin(2 * np.pi * np.arange(60) / 10)
    x, target = data.make_windows(y[:, None], y, np.arange(10, 57), 10, 4)
    model = models.Forecaster(rnnjax.GRU(12), 1, 4, mode=mode)
    params = model.init(jax.random.PRNGKey(0))
    optimizer = optax.adam(1e-2)

    @jax.jit
    def steps(params):
        def one(carry, _):
            params, opt_state = carry
            grads = jax.grad(lambda p: jnp.mean((model.apply(p, x) - target) ** 2))(params)
            updates, opt_state = optimizer.update(grads, opt_state)
            return (optax.apply_updates(params, updates), opt_state), None

        return jax.lax.scan(one, (params, optimizer.init(params)), length=250)[0][0]

    params = steps(params)
    assert np.abs(np.asarray(model.apply(params, x)) - target).max() < 0.05


def test_autoregressive_rollout_equals_feeding_predictions_back_by_hand():
    layer = rnnjax.LSTM(6)
    window = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 3))
    future = jax.random.normal(jax.random.PRNGKey(2), (2, 3, 2))
    model = models.Forecaster(layer, 3, 3, mode="autoregressive", skip_window=2)
    params = model.init(jax.random.PRNGKey(0))
    params = params._replace(skip=(jnp.array([[0.3], [-0.2]]), jnp.array([0.1])))
    rolled = np.asarray(model.apply(params, window, future))
    one_step = models.Forecaster(layer, 3, 1, mode="autoregressive", skip_window=2)
    x = window
    for k in range(3):
        value = one_step.apply(params, x)
        np.testing.assert_allclose(rolled[:, k], value[:, 0], rtol=1e-5, atol=1e-6)
        step = jnp.concatenate([value, future[:, k]], axis=-1)[:, None, :]
        x = jnp.concatenate([x, step], axis=1)


def test_tiny_preset_trains_compares_and_predicts(tmp_path):
    config = _config(AIRLINE)
    result = forecast_compare.compare(config, str(tmp_path))
    rows = result["rows"]
    # The reference on this split validates it: seasonal naive RMSE 50.7.
    assert rows["seasonal naive (12)"]["rmse"] == pytest.approx(50.708, abs=1e-3)
    assert rows["persistence"]["rmse"] == pytest.approx(102.977, abs=1e-3)
    assert result["steps"] == config.num_steps and result["actual"].shape == (1, 12)
    history = tmp_path / "history.csv"
    lines = AIRLINE.read_bytes().split(b"\r\n")[:133]  # header + the 132 months before the test
    history.write_bytes(b"\r\n".join(lines))
    out = tmp_path / "next.csv"
    message = predict.predict(str(tmp_path / "seed0"), str(history), str(out))
    assert "next 12 values" in message
    written = out.read_text().splitlines()
    assert written[0] == "Month,Passengers" and written[1].startswith("1960-01,")
    assert written[-1].startswith("1960-12,") and len(written) == 13
    predicted = [float(line.split(",")[1]) for line in written[1:]]
    network = result["forecasts"][result["network"]][0]
    np.testing.assert_allclose(predicted, network, rtol=1e-5)


def test_extra_columns_are_scaled_inputs_of_a_direct_forecaster(tmp_path):
    rng = np.random.default_rng(2)
    rows = [f'"{1949 + i // 12}-{i % 12 + 1:02d}",{100 + i},{rng.normal():.4f}' for i in range(80)]
    path = tmp_path / "two.csv"
    path.write_text('"Month","Passengers","Rain"\n' + "\n".join(rows))
    config = _config(path, **{"data.extra_columns": ("Rain",)})
    d = forecast.load_data(config, str(tmp_path))
    rain = data.read_series(str(path), "Rain").values[:, 0]
    np.testing.assert_allclose(d.scaler.mean[1], rain[12 : d.split.valid_start].mean())
    batch = forecast.train_batch(config, d, 0)
    assert batch["inputs"].shape == (8, 12, 4) and batch["future"].shape == (8, 12, 2)
    model = forecast.build_model(config, d)
    params = model.init(jax.random.PRNGKey(0))
    at = forecast.test_origins(config, d)
    assert forecast.forecast(config, forecast.make_apply(model), params, d, at).shape == (1, 12)
    config.model.precision = "bfloat16"  # the same parameters, the cells' matmuls rounded
    mixed = forecast.build_model(config, d)
    assert isinstance(mixed.layer.cell, rnnjax.cells.MixedPrecisionCell)
    rounded = forecast.forecast(config, forecast.make_apply(mixed), params, d, at)
    exact = forecast.forecast(config, forecast.make_apply(model), params, d, at)
    assert 0 < np.max(np.abs(rounded - exact)) < 0.05 * np.max(np.abs(exact))
    config.model.precision = "float32"
    config.model.mode = "autoregressive"
    with pytest.raises(config_cli.ConfigError, match="cannot feed back config.data.extra_columns"):
        config_cli.validate(config)


def test_window_origins_and_windows_by_hand():
    assert data.window_origins(0, 10, 3, 2, first=1).tolist() == [4, 5, 6, 7, 8]
    assert data.window_origins(6, 10, 3, 2).tolist() == [6, 7, 8]
    x, y = data.make_windows(np.arange(10.0)[:, None], np.arange(10.0) * 10, [4, 8], 3, 2)
    assert x[..., 0].tolist() == [[1, 2, 3], [5, 6, 7]] and y.tolist() == [[40, 50], [80, 90]]
    split = data.chronological_split(100, 20, 10)
    assert (split.valid_start, split.test_start, split.length) == (70, 80, 100)
