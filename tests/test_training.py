"""Tests of rnnjax.training against independent computations (optax.sgd by hand, numpy means)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnjax import training


def _regression(params, carry, batch, key):
    del key
    residual = batch["x"] @ params["w"] + params["b"][None, :] - batch["y"]
    return jnp.mean(residual**2), (carry, {})


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(32, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3).astype(np.float32)
    params = {"w": jnp.zeros((3, 1)), "b": jnp.zeros((1,))}
    return params, {"x": x, "y": y}


def _state(params, optimizer):
    return training.create_train_state(params, optimizer, jax.random.PRNGKey(0))


def test_train_step_lowers_the_loss():
    params, batch = _problem()
    optimizer = training.make_optimizer(optax.adam(0.05), max_norm=1.0)
    step = training.make_train_step(_regression, optimizer, max_norm=1.0)
    state = _state(params, optimizer)
    losses = []
    for _ in range(100):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.01 * losses[0]
    assert int(state.step) == 100


@pytest.mark.parametrize("max_norm", [1e-3, 1e3])
def test_clipping_bounds_the_update_only_above_the_limit(max_norm):
    params, batch = _problem()
    lr = 0.1
    optimizer = training.make_optimizer(optax.sgd(lr), max_norm=max_norm)
    step = training.make_train_step(
        _regression, optimizer, max_norm=max_norm, learning_rate_fn=lambda s: lr, donate=False
    )
    state = _state(params, optimizer)
    new_state, metrics = step(state, batch)

    grads = jax.grad(lambda p: _regression(p, (), batch, None)[0])(params)
    norm = float(
        np.sqrt(sum(np.sum(np.asarray(g, np.float64) ** 2) for g in jax.tree.leaves(grads)))
    )
    assert norm > 1e-2  # far above the small limit, far below the large one
    scale = min(1.0, max_norm / norm)
    for name in params:
        expected = np.asarray(params[name]) - lr * scale * np.asarray(grads[name])
        np.testing.assert_allclose(new_state.params[name], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(metrics["grad_norm"], optax.tree.norm(grads), rtol=1e-6)
    assert float(metrics["clipped"]) == (1.0 if max_norm < norm else 0.0)
    assert float(metrics["learning_rate"]) == pytest.approx(lr)
    update = jnp.sqrt(
        sum(
            jnp.sum((a - b) ** 2)
            for a, b in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(params), strict=True)
        )
    )
    assert float(update) <= lr * max_norm * (1 + 1e-5)


def _poisoned(params, carry, batch, key):
    loss, aux = _regression(params, carry, batch, key)
    return jnp.where(batch["poison"], jnp.nan, loss), aux


def test_non_finite_steps_are_skipped_counted_and_stop_the_run():
    params, batch = _problem()
    optimizer = training.make_optimizer(optax.adam(0.05), max_norm=1.0)
    step = training.make_train_step(_poisoned, optimizer, max_norm=1.0)
    state = _state(params, optimizer)
    state, _ = step(state, {**batch, "poison": np.bool_(False)})
    before = jax.tree.map(np.array, (state.params, state.opt_state))
    state, metrics = step(state, {**batch, "poison": np.bool_(True)})
    assert float(metrics["nonfinite"]) == 1.0
    jax.tree.map(np.testing.assert_array_equal, (state.params, state.opt_state), before)
    assert (int(state.nonfinite_in_a_row), int(state.nonfinite_total)) == (1, 1)
    training.check_finite(state, max_in_a_row=2)  # one in a row is under the limit

    state, _ = step(state, {**batch, "poison": np.bool_(True)})
    state, _ = step(state, {**batch, "poison": np.bool_(False)})  # a good step resets the run
    assert (int(state.nonfinite_in_a_row), int(state.nonfinite_total)) == (0, 2)
    with pytest.raises(training.NonFiniteError, match=r"2 consecutive .*by step 4"):
        training.check_finite(state, max_in_a_row=2)


def test_step_key_is_fold_in_of_the_run_key_and_step():
    def loss_fn(params, carry, batch, key):
        return jnp.sum(params["w"]), (carry, {"draw": jax.random.uniform(key)})

    optimizer = training.make_optimizer(optax.sgd(0.1), max_norm=1.0)
    step = training.make_train_step(loss_fn, optimizer, max_norm=1.0)
    state = training.create_train_state({"w": jnp.ones((2,))}, optimizer, jax.random.PRNGKey(7))
    rng = jax.random.PRNGKey(7)  # a copy: the state's key is donated
    for k in range(3):
        state, metrics = step(state, {})
        assert float(metrics["draw"]) == float(jax.random.uniform(jax.random.fold_in(rng, k)))


def test_carry_is_threaded_through_steps():
    def loss_fn(params, carry, batch, key):
        del batch, key
        return jnp.sum(params["w"] * carry), (carry + 1.0, {})

    optimizer = training.make_optimizer(optax.sgd(0.1), max_norm=1.0)
    step = training.make_train_step(loss_fn, optimizer, max_norm=1.0)
    state = training.create_train_state(
        {"w": jnp.ones((2,))}, optimizer, jax.random.PRNGKey(0), carry=jnp.zeros((2,))
    )
    for _ in range(3):
        state, _ = step(state, {})
    np.testing.assert_array_equal(state.carry, [3.0, 3.0])


def test_evaluate_weights_every_real_token_equally():
    rng = np.random.default_rng(0)
    batches, nll, hits = [], [], []
    for real in ([5, 1], [2, 0], [4, 4]):  # tokens per row; the rest is padding
        logits = rng.normal(size=(2, 5, 7)).astype(np.float32)
        targets = rng.integers(0, 7, size=(2, 5))
        mask = (np.arange(5)[None, :] < np.array(real)[:, None]).astype(np.float32)
        batches.append((logits, targets, mask))
        for b in range(2):
            for t in range(real[b]):
                z = logits[b, t].astype(np.float64)
                nll.append(np.log(np.sum(np.exp(z - z.max()))) + z.max() - z[targets[b, t]])
                hits.append(np.argmax(z) == targets[b, t])

    def eval_step(params, carry, batch):
        return carry, training.masked_sums(*batch)

    metrics = training.evaluate(jax.jit(eval_step), None, batches)
    assert metrics["tokens"] == len(nll) == 16
    assert metrics["loss"] == pytest.approx(np.mean(nll), rel=1e-5)
    assert metrics["accuracy"] == pytest.approx(np.mean(hits))
    assert metrics["bits_per_token"] == pytest.approx(np.mean(nll) / np.log(2), rel=1e-5)


def test_checkpointer_round_trip_and_keeps_the_last_k(tmp_path):
    params, _ = _problem()
    optimizer = training.make_optimizer(optax.adam(0.1), max_norm=1.0)
    state = _state(params, optimizer)
    checkpointer = training.Checkpointer(str(tmp_path / "ckpt"), max_to_keep=2)
    assert checkpointer.restore_latest(state) is state
    for step in (1, 2, 3):
        state = state.replace(
            step=jnp.int32(step), params=jax.tree.map(lambda p: p + 1, state.params)
        )
        checkpointer.save(state)
    assert sorted(int(p.name) for p in (tmp_path / "ckpt").iterdir()) == [2, 3]
    fresh = _state(params, optimizer)
    restored = checkpointer.restore_latest(fresh)
    assert int(restored.step) == 3
    jax.tree.map(np.testing.assert_array_equal, restored, state)
    checkpointer.close()


def test_console_line_has_step_loss_rates_and_eta():
    line = training.console_line(
        5, 10, {"loss": 1.5, "steps_per_sec": 2.0, "tokens_per_sec": 1000.0, "eta_sec": 125.0}
    )
    assert line == "step 5/10 | loss 1.5000 | 2.00 steps/s | 1,000 tok/s | ETA 2m05s"


def test_train_step_compiles_once():
    params, batch = _problem()
    optimizer = training.make_optimizer(optax.adam(0.05), max_norm=1.0)
    step = training.make_train_step(_regression, optimizer, max_norm=1.0)
    state = _state(params, optimizer)
    for _ in range(3):
        state, _ = step(state, batch)
    assert step._cache_size() == 1
