"""Classical forecasting baselines and error metrics, in float64 NumPy.

Every baseline forecasts the same thing as ``Forecaster``: from a forecast origin ``t`` (the first
unseen step) the K values ``series[t : t + K]``, knowing ``series[:t]``. Report them next to any
learned forecaster: on small series they are often hard to beat (Hyndman & Athanasopoulos,
*Forecasting: Principles and Practice*, 3rd ed., sections 5.2 and 5.8).

Shapes: N series length, M forecast origins, K horizon, p the AR order.
"""

import dataclasses

import numpy as np


def _check(series, origins, horizon: int, lookback: int):
    series = np.asarray(series, np.float64)
    origins = np.asarray(origins, np.int64)
    if series.ndim != 1:
        raise ValueError(f"series must be 1-D [N], got shape {series.shape}")
    if not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ValueError(f"horizon must be a positive int, got {horizon!r}")
    if origins.size and (origins.min() < lookback or origins.max() > len(series)):
        raise ValueError(
            f"origins must lie in [{lookback}, {len(series)}] (the baseline looks back "
            f"{lookback} steps), got [{origins.min()}, {origins.max()}]"
        )
    return series, origins


def persistence(series, origins, horizon: int) -> np.ndarray:
    """``[M, K]``: the last known value, ``series[t - 1]``, for every step of the horizon."""
    series, origins = _check(series, origins, horizon, 1)
    return np.repeat(series[origins - 1][:, None], horizon, axis=1)


def seasonal_naive(series, origins, horizon: int, season: int) -> np.ndarray:
    """``[M, K]``: the value one season earlier, ``series[t + k - season * ceil((k + 1) /
    season)]`` for step k (the last observed season repeated when K > season)."""
    if not isinstance(season, int | np.integer) or season < 1:
        raise ValueError(f"season must be a positive int, got {season!r}")
    series, origins = _check(series, origins, horizon, season)
    k = np.arange(horizon)
    back = season * ((k + season) // season)  # season * ceil((k + 1) / season)
    return series[origins[:, None] + k[None, :] - back[None, :]]


@dataclasses.dataclass(frozen=True)
class ARModel:
    """``y_t = intercept + sum_i coef[i] * y_{t-1-i}``, fitted by least squares (``fit_ar``)."""

    coef: np.ndarray  # [p], coef[0] multiplies the most recent value
    intercept: float

    @property
    def order(self) -> int:
        return len(self.coef)


def fit_ar(series, order: int, stop: int | None = None) -> ARModel:
    """Least-squares AR(``order``) with an intercept on the targets ``series[order:stop]``.

    Raises:
      ValueError: an order below 1, or fewer targets than parameters.
    """
    series = np.asarray(series, np.float64)[:stop]
    if not isinstance(order, int | np.integer) or order < 1:
        raise ValueError(f"order must be a positive int, got {order!r}")
    if len(series) - order < order + 1:
        raise ValueError(
            f"AR({order}) needs at least {2 * order + 1} fitting values, got {len(series)}"
        )
    lags = np.lib.stride_tricks.sliding_window_view(series[:-1], order)[:, ::-1]  # [N-p, p]
    design = np.concatenate([np.ones((len(lags), 1)), lags], axis=1)
    solution, *_ = np.linalg.lstsq(design, series[order:], rcond=None)
    return ARModel(solution[1:], float(solution[0]))


def ar_forecast(model: ARModel, series, origins, horizon: int) -> np.ndarray:
    """``[M, K]``: the AR recursion from each origin, its own forecasts fed back after step 0."""
    series, origins = _check(series, origins, horizon, model.order)
    history = series[origins[:, None] + np.arange(-model.order, 0)[None, :]]  # [M, p], oldest 1st
    out = np.empty((len(origins), horizon))
    for k in range(horizon):
        out[:, k] = model.intercept + history[:, ::-1] @ model.coef
        history = np.concatenate([history[:, 1:], out[:, k : k + 1]], axis=1)
    return out


def choose_ar_order(series, max_order: int, fit_stop: int, origins, horizon: int) -> int:
    """The order in ``1..max_order`` whose model, fitted on ``series[:fit_stop]``, has the
    lowest RMSE on the validation ``origins`` (ties: the smallest order)."""
    series = np.asarray(series, np.float64)
    origins = np.asarray(origins)
    future = series[origins[:, None] + np.arange(horizon)[None, :]]
    errors = []
    for order in range(1, max_order + 1):
        usable = origins >= order
        prediction = ar_forecast(fit_ar(series, order, fit_stop), series, origins[usable], horizon)
        errors.append(rmse(prediction, future[usable]))
    return int(np.argmin(errors)) + 1


def rmse(prediction, actual) -> float:
    """Root mean squared error over all elements."""
    error = np.asarray(prediction, np.float64) - np.asarray(actual, np.float64)
    return float(np.sqrt(np.mean(error**2)))


def mae(prediction, actual) -> float:
    """Mean absolute error over all elements."""
    return float(np.mean(np.abs(np.asarray(prediction, np.float64) - actual)))


def mase(prediction, actual, training, season: int = 1) -> float:
    """Mean absolute scaled error (Hyndman & Koehler, 2006): the MAE over the in-sample MAE of
    the (seasonal) naive one-step forecast on ``training`` (``[N]``, the training part only).
    Below 1: better than that naive method was in-sample."""
    training = np.asarray(training, np.float64)
    if len(training) <= season:
        raise ValueError(f"mase needs more than season={season} training values")
    scale = np.mean(np.abs(training[season:] - training[:-season]))
    return mae(prediction, actual) / float(scale)
