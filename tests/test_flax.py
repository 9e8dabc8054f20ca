"""rnnjax.flax: linen and NNX modules give the pure layers' numbers with Flax's bookkeeping.

The pure layers are tested against float64 loops elsewhere; here the modules are compared with
the pure layer on the same parameters (exactly; NNX's gradients to an ulp), with torch.nn.LSTM
(two-line import), and with flax.linen.RNN(OptimizedLSTMCell) on weights mapped by hand.
"""

import subprocess
import sys

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import rnnjax
import rnnjax.flax as rf
from tests.test_custom_cell import PeepholeLSTM

B, T, IN = 3, 6, 5
LENGTHS = np.array([6, 0, 3])

CONFIGS = {
    "lstm_bi2": lambda: rf.LSTM(4, num_layers=2, bidirectional=True),
    "lstm_proj_nobias": lambda: rf.LSTM(4, proj_size=3, bias=False),
    "rnn_relu_bi": lambda: rf.RNN(4, bidirectional=True, nonlinearity="relu"),
    "peephole": lambda: rf.Recurrent(PeepholeLSTM(4)),
    "gru_bf16": lambda: rf.GRU(4, num_layers=2, dtype=jnp.bfloat16),
}


def _inputs(layer, seed=0):
    k_x, k_s = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(k_x, (B, T, IN))
    s0 = jax.tree.map(lambda s: jax.random.normal(k_s, s.shape), layer.initial_state(B))
    return x, s0


def _loss(out_state):
    out, state = out_state
    return jnp.sum(jnp.sin(out)) + sum(jnp.sum(s**2) for s in jax.tree.leaves(state))


@pytest.mark.parametrize("name", CONFIGS)
def test_linen_and_nnx_equal_pure_layer_values_and_gradients(name):
    model = CONFIGS[name]()
    layer = model.layer
    x, s0 = _inputs(layer)
    params = layer.init(jax.random.key(1), IN)
    flax_params = rf.to_flax_params(layer, params)
    abstract = jax.eval_shape(model.init, jax.random.key(1), x)["params"]
    chex.assert_trees_all_equal_shapes_and_dtypes(abstract, flax_params)
    chex.assert_trees_all_equal(rf.from_flax_params(layer, flax_params, input_size=IN), params)
    nnx_model = rf.nnx.Recurrent.from_params(layer, params, return_state=True, input_size=IN)

    def value_and_grads(run, *args):  # (outputs, state) and the gradients wrt every argument
        return run(*args), jax.grad(lambda *a: _loss(run(*a)), range(len(args)))(*args)

    @nnx.jit  # one compilation for the three: the module graphs are the pure layer's
    def run_all(nnx_model, params, flax_params, x, s0):
        pure = value_and_grads(lambda p, x, s0: layer(p, x, LENGTHS, s0), params, x, s0)
        linen = value_and_grads(
            lambda fp, x, s0: model.apply(
                {"params": fp}, x, LENGTHS, initial_state=s0, return_state=True
            ),
            flax_params,
            x,
            s0,
        )
        nnx_grads = nnx.grad(lambda m: _loss(m(x, LENGTHS, initial_state=s0)))(nnx_model)
        return pure, linen, nnx_model(x, LENGTHS, initial_state=s0), nnx_grads

    pure, linen, nnx_out, nnx_grads = run_all(nnx_model, params, flax_params, x, s0)
    want, (g_params, g_x, g_s0) = pure
    chex.assert_trees_all_equal(linen[0], want)
    chex.assert_trees_all_equal(linen[1], (rf.to_flax_params(layer, g_params), g_x, g_s0))
    chex.assert_trees_all_equal(nnx_out, want)
    # NNX differentiates with respect to the parameters only, the pure run also with respect to
    # x and s0: another backward program, whose sums XLA may fuse in another order (one ulp).
    chex.assert_trees_all_close(
        nnx.to_pure_dict(nnx_grads), rf.to_flax_params(layer, g_params), rtol=1e-6, atol=1e-7
    )


def test_parameter_names_and_init_follow_the_pure_layer():
    model = rf.LSTM(4, num_layers=2, bidirectional=True, proj_size=2, bias=False)
    variables = model.init(jax.random.key(0), jnp.zeros((B, T, IN)))
    shapes = jax.tree.map(jnp.shape, variables["params"])
    assert shapes["l0_reverse"] == {"w_ih": (IN, 16), "w_hh": (2, 16), "w_hr": (4, 2)}
    assert shapes["l1"]["w_ih"] == (4, 16)  # D * P inputs
    bound = 1 / np.sqrt(4)  # PyTorch's uniform init, as layer.init
    assert all(np.abs(v).max() <= bound for v in jax.tree.leaves(variables))
    assert len({float(v.ravel()[0]) for v in jax.tree.leaves(variables)}) == 12  # all distinct
    # The user cell's fields name its parameters; the round trip keeps its pytree types.
    peep = rf.Recurrent(PeepholeLSTM(3))
    fp = peep.init(jax.random.key(0), jnp.zeros((B, T, IN)))["params"]
    assert sorted(fp["l0"]) == ["b", "w_hh", "w_ih", "w_peep"]
    pure = rf.from_flax_params(peep.layer, fp)
    assert type(pure[0]).__name__ == "PeepholeParams"


def test_dtype_rounds_the_cells_matmuls_and_keeps_the_parameters():
    x = jax.random.normal(jax.random.key(2), (B, T, IN))
    exact, mixed = rf.LSTM(4, num_layers=2), rf.LSTM(4, num_layers=2, dtype=jnp.bfloat16)
    variables = exact.init(jax.random.key(0), x)
    chex.assert_trees_all_equal(mixed.init(jax.random.key(0), x), variables)
    assert rf.LSTM(4, dtype=jnp.float32).layer == rnnjax.LSTM(4)
    cell = mixed.layer.cell
    assert isinstance(cell, rnnjax.cells.MixedPrecisionCell) and cell.compute_dtype == jnp.bfloat16
    want, got = exact.apply(variables, x), mixed.apply(variables, x)
    assert got.dtype == jnp.float32
    assert 1e-5 < float(jnp.max(jnp.abs(got - want))) < 5e-2  # bf16's 8-bit mantissa, not 0
    params = rf.from_flax_params(mixed.layer, variables["params"])
    chex.assert_trees_all_equal(got, mixed.layer(params, x)[0])
    nnx_model = rf.nnx.LSTM(IN, 4, 2, dtype=jnp.bfloat16, rngs=nnx.Rngs(params=0))
    nnx.update(nnx_model, variables["params"])
    chex.assert_trees_all_equal(nnx_model(x), got)
    for dtype, message in [
        (jnp.int8, "compute_dtype must be a floating dtype"),
        ("nonsense", "dtype must be None, float32 or a floating dtype"),
    ]:
        with pytest.raises(ValueError, match=message):
            rf.GRU(4, dtype=dtype)


def test_torch_lstm_into_flax_in_two_lines():
    torch = pytest.importorskip("torch")
    import rnnjax.interop.torch as rt

    torch.manual_seed(0)
    module = torch.nn.LSTM(IN, 4, num_layers=2, bidirectional=True, batch_first=True)
    x = np.random.default_rng(0).normal(size=(B, T, IN)).astype(np.float32)
    want, (h_n, _) = module(torch.from_numpy(x))
    # The README's two lines (linen), then NNX's one.
    layer, params = rt.from_torch(module)
    model, variables = rf.Recurrent(layer), {"params": rf.to_flax_params(layer, params)}
    tol = dict(rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(model.apply(variables, x), want.detach().numpy(), **tol)
    np.testing.assert_array_equal(  # names follow torch's weight_ih_l0_reverse
        variables["params"]["l0_reverse"]["w_ih"], module.weight_ih_l0_reverse.detach().numpy().T
    )
    nnx_model = rf.nnx.Recurrent.from_params(layer, params, return_state=True)
    out, state = nnx_model(x)
    chex.assert_trees_all_close(out, want.detach().numpy(), **tol)
    chex.assert_trees_all_close(state.hidden, h_n.detach().numpy(), **tol)
    back = rt.to_torch(*nnx_model.to_rnnjax())
    for key, value in module.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[key].numpy(), value.numpy())


def test_linen_dropout_uses_the_dropout_stream():
    model = rf.LSTM(8, num_layers=3, dropout=0.5)
    x = jax.random.normal(jax.random.key(0), (B, T, IN))
    variables = model.init(jax.random.key(1), x, deterministic=True)
    apply = jax.jit(model.apply, static_argnames="deterministic")
    clean = apply(variables, x, deterministic=True)
    params = rf.from_flax_params(model.layer, variables["params"])
    chex.assert_trees_all_equal(clean, jax.jit(model.layer)(params, x)[0])
    a = apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(2)})
    b = apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(2)})
    c = apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(3)})
    chex.assert_trees_all_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, clean)
    # The attribute is the default; the call overrides it.
    fixed = rf.LSTM(8, num_layers=3, dropout=0.5, deterministic=True)
    chex.assert_trees_all_equal(fixed.apply(variables, x), clean)
    # No dropout between layers (one layer, or rate 0): no deterministic flag, no RNG needed.
    one = rf.LSTM(8, dropout=0.5)
    one.apply(one.init(jax.random.key(1), x), x)


def test_nnx_dropout_train_eval_and_streams():
    x = jax.random.normal(jax.random.key(0), (B, T, IN))
    model = rf.nnx.LSTM(IN, 8, 3, dropout=0.5, rngs=nnx.Rngs(params=0, dropout=1))
    layer, params = model.to_rnnjax()
    first, second = model(x), model(x)  # the stream advances: new masks each call
    assert not np.allclose(first, second)
    twin = rf.nnx.LSTM(IN, 8, 3, dropout=0.5, rngs=nnx.Rngs(params=0, dropout=1))
    chex.assert_trees_all_equal(twin(x), first)  # same seeds, same masks
    clean = jax.jit(layer)(params, x)[0]
    chex.assert_trees_all_equal(model(x, deterministic=True), clean)
    chex.assert_trees_all_equal(nnx.view(model, deterministic=True)(x), clean)
    model.eval()
    chex.assert_trees_all_equal(model(x), clean)
    model.train()
    key = jax.random.key(5)
    chex.assert_trees_all_equal(model(x, rngs=key), model(x, rngs=key))


def test_jit_compiles_once():
    model = rf.GRU(8, num_layers=2, dropout=0.1)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def loss(variables, x, lengths, key):
        out = model.apply(variables, x, lengths, deterministic=False, rngs={"dropout": key})
        return jnp.mean(out**2)

    x = jnp.ones((B, T, IN))
    variables = model.init(jax.random.key(0), x, deterministic=True)
    for step in range(3):
        jax.grad(loss)(variables, x + step, LENGTHS - step, jax.random.key(step))

    nnx_model = rf.nnx.GRU(IN, 8, 2, dropout=0.1, rngs=nnx.Rngs(0))

    @nnx.jit
    @chex.assert_max_traces(n=1)
    def forward(m, x):
        return m(x)

    outs = [forward(nnx_model, x) for _ in range(3)]
    assert not np.allclose(outs[0], outs[1])  # the module's dropout stream advanced


class _Classifier(nn.Module):
    """Dense -> rnnjax LSTM -> Dense on the final hidden state, as a Flax user writes it."""

    @nn.compact
    def __call__(self, x, lengths, *, train: bool):
        x = nn.relu(nn.Dense(8)(x))
        _, state = rf.LSTM(16, num_layers=2, dropout=0.1, return_state=True)(
            x, lengths, deterministic=not train
        )
        return nn.Dense(2)(state.hidden[-1])


@jax.jit
def _toy_batch(key):
    """Is the sum of the first feature over the valid steps positive? [B=32, T=6, I=5]."""
    k_x, k_n = jax.random.split(key)
    x = jax.random.normal(k_x, (32, T, IN))
    lengths = jax.random.randint(k_n, (32,), 1, T + 1)
    valid = jnp.arange(T)[None, :] < lengths[:, None]
    return x, lengths, (jnp.sum(jnp.where(valid, x[..., 0], 0.0), axis=1) > 0).astype(jnp.int32)


def test_optax_training_step_on_a_linen_model():
    model = _Classifier()
    x, lengths, labels = _toy_batch(jax.random.key(0))
    params = model.init(jax.random.key(1), x, lengths, train=False)["params"]
    optimizer = optax.adam(1e-2)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, key):
        x, lengths, labels = _toy_batch(key)

        def loss_fn(params):
            logits = model.apply({"params": params}, x, lengths, train=True, rngs={"dropout": key})
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for i in range(60):
        params, opt_state, loss = step(params, opt_state, jax.random.key(100 + i))
        losses.append(float(loss))
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10]), losses


def test_nnx_optimizer_step_and_orbax_round_trip(tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")
    model = rf.nnx.LSTM(IN, 6, 2, bidirectional=True, dropout=0.2, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    x, lengths, labels = _toy_batch(jax.random.key(0))

    @nnx.jit
    def train_step(model, optimizer, x, lengths):
        grads = nnx.grad(lambda m: jnp.mean(m(x, lengths) ** 2))(model)
        optimizer.update(model, grads)

    before = model.to_rnnjax()[1]
    train_step(model, optimizer, x, lengths)
    assert not np.allclose(before[0].w_ih, model.l0["w_ih"][...])

    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "ckpt", nnx.state(model))
    fresh = nnx.eval_shape(
        lambda: rf.nnx.LSTM(IN, 6, 2, bidirectional=True, dropout=0.2, rngs=nnx.Rngs(9))
    )
    graphdef, abstract = nnx.split(fresh)
    with ocp.StandardCheckpointer() as checkpointer:
        restored = checkpointer.restore(tmp_path / "ckpt", abstract)
    restored_model = nnx.merge(graphdef, restored)
    model.eval(), restored_model.eval()
    chex.assert_trees_all_equal(restored_model(x, lengths), model(x, lengths))
    chex.assert_trees_all_equal(nnx.state(restored_model), nnx.state(model))


def test_remat_and_partitioning():
    x, _ = _inputs(rnnjax.LSTM(4))
    plain = rf.LSTM(4)
    variables = plain.init(jax.random.key(0), x)
    remat = nn.remat(rf.LSTM)(4)
    grad = lambda m: jax.grad(lambda v: jnp.sum(m.apply(v, x, LENGTHS) ** 2))(variables)  # noqa: E731
    chex.assert_trees_all_close(grad(remat), grad(plain), rtol=1e-6, atol=1e-7)

    names = {"w_ih": (None, "gates"), "w_hh": (None, "gates"), "b_ih": ("gates",)}
    model = rf.LSTM(4, partition_names=names)
    abstract = jax.eval_shape(model.init, jax.random.key(0), x)
    specs = nn.get_partition_spec(abstract)["params"]
    P = jax.sharding.PartitionSpec
    assert specs["l0"] == {
        "w_ih": P(None, "gates"),
        "w_hh": P(None, "gates"),
        "b_ih": P("gates"),
        "b_hh": P(None),
    }
    mesh = jax.make_mesh((1,), ("model",))
    shardings = nn.logical_to_mesh_sharding(
        nn.get_partition_spec(abstract), mesh, [("gates", "model")]
    )
    boxed = jax.jit(model.init, out_shardings=shardings)(jax.random.key(0), x)
    assert boxed["params"]["l0"]["w_ih"].value.sharding.spec == P(None, "model")
    chex.assert_trees_all_equal(nn.unbox(boxed), variables)  # same key, same values
    chex.assert_trees_all_equal(model.apply(boxed, x), plain.apply(variables, x))
    with jax.set_mesh(mesh), nn.logical_axis_rules([("gates", "model")]):
        nnx_model = rf.nnx.LSTM(IN, 4, rngs=nnx.Rngs(0), partition_names=names)
    assert nnx.get_partition_spec(nnx.state(nnx_model))["l0"]["w_hh"].get_value() == P(
        None, "gates"
    )


def test_side_by_side_with_flax_linen_rnn():
    """Same shapes as nn.RNN(OptimizedLSTMCell), and the same numbers on mapped weights."""
    x = jax.random.normal(jax.random.key(0), (B, T, IN))
    theirs = nn.Bidirectional(nn.RNN(nn.OptimizedLSTMCell(4)), nn.RNN(nn.OptimizedLSTMCell(4)))
    their_vars = theirs.init(jax.random.key(1), x)
    ours = rf.LSTM(4, bidirectional=True, return_state=True)
    (their_fwd, their_bwd), their_out = theirs.apply(
        their_vars, x, seq_lengths=LENGTHS, return_carry=True
    )

    def mapped(cell):  # 8 Dense layers (gates i, f, g, o; biases on the h side) -> CellParams
        kernel = lambda side: jnp.concatenate([cell[side + g]["kernel"] for g in "ifgo"], axis=1)  # noqa: E731
        bias = jnp.concatenate([cell["h" + g]["bias"] for g in "ifgo"])
        return rnnjax.cells.CellParams(kernel("i"), kernel("h"), jnp.zeros_like(bias), bias)

    cells = their_vars["params"]
    params = (mapped(cells["forward_rnn"]["cell"]), mapped(cells["backward_rnn"]["cell"]))
    out, state = ours.apply({"params": rf.to_flax_params(ours.layer, params)}, x, LENGTHS)
    assert out.shape == their_out.shape == (B, T, 8)
    valid = (np.arange(T)[None, :] < LENGTHS[:, None])[..., None]
    tol = dict(rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(jnp.where(valid, out, 0), jnp.where(valid, their_out, 0), **tol)
    assert np.all(np.asarray(out)[~valid[..., 0]] == 0)  # padding: zeros here, not in nn.RNN
    assert not np.allclose(np.asarray(their_out)[~valid[..., 0]], 0)
    # Their carry per direction is (c, h) [B, H]; ours LSTMState(h, c) [L*D, B, H]. The empty
    # sequence keeps the initial (zero) state here.
    nonempty = LENGTHS > 0
    for d, (c, h) in enumerate([their_fwd, their_bwd]):
        chex.assert_trees_all_close(
            (state.hidden[d][nonempty], state.cell[d][nonempty]), (h[nonempty], c[nonempty]), **tol
        )
    chex.assert_trees_all_equal(state.hidden[:, ~nonempty], jnp.zeros((2, 1, 4)))


@pytest.mark.parametrize(
    "call,message",
    [
        (
            lambda m, v, x: m.apply(v, x[0], deterministic=True),
            r"inputs must have shape \[B, T, I\]",
        ),
        (lambda m, v, x: m.apply(v, x[..., :3], deterministic=True), "inputs must have 5 features"),
        (lambda m, v, x: m.apply(v, x, deterministic=False), "no 'dropout' RNG"),
        (lambda m, v, x: m.apply(v, x), "deterministic must be given"),
        (lambda m, v, x: m.apply(v, x, LENGTHS + 1, deterministic=True), r"lengths must lie in"),
    ],
)
def test_linen_bad_input_one_line_errors(call, message):
    model = rf.LSTM(4, num_layers=2, dropout=0.1)
    x = jnp.ones((B, T, IN))
    variables = model.init(jax.random.key(0), x, deterministic=True)
    with pytest.raises(ValueError, match=message) as err:
        call(model, variables, x)
    assert "\n" not in str(err.value)


def test_other_bad_input_one_line_errors():
    x = jnp.ones((B, T, IN))
    model = rf.nnx.LSTM(IN, 4, 2, dropout=0.1, rngs=nnx.Rngs(params=0))
    cases = [
        (lambda: model(x[..., :4]), r"inputs must have shape \[B, T, I\] with I=5"),
        (lambda: model(x), "no 'dropout' RNG stream"),
        (
            lambda: rf.LSTM(4, partition_names={"w_ih": ("a",)}).init(jax.random.key(0), x),
            r"partition_names\['w_ih'\] must have 2 entries",
        ),
        (lambda: rf.LSTM(4, num_layers=0), "num_layers must be a positive int"),
        (lambda: rf.from_flax_params(rnnjax.LSTM(4, 2), {"l0": {}}), "must have the groups"),
        (
            lambda: rf.from_flax_params(
                rnnjax.LSTM(4),
                {
                    "l0": {
                        "w_ih": np.ones((5, 16)),
                        "w_hh": np.ones((4, 15)),
                        "b_ih": np.ones(16),
                        "b_hh": np.ones(16),
                    }
                },
            ),
            r"flax_params\['l0'\]\['w_hh'\] must have shape \(4, 16\)",
        ),
        (lambda: rf.to_flax_params(rnnjax.GRU(4, bidirectional=True), ()), "tuple of 2 cell"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            call()
        assert "\n" not in str(err.value)
    model.eval()
    model(x)  # evaluation needs no dropout stream


def test_import_rnnjax_does_not_import_rnnjax_flax():
    code = "import sys, rnnjax; print('rnnjax.flax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_time_major_and_options_pass_through():
    x, _ = _inputs(rnnjax.GRU(4))
    model = rf.GRU(4, num_layers=2, batch_first=False, reset_after=False, unroll=2, backend="scan")
    assert model.layer == rnnjax.GRU(
        4, 2, batch_first=False, reset_after=False, unroll=2, backend="scan"
    )
    x_tm = jnp.swapaxes(x, 0, 1)
    variables = model.init(jax.random.key(0), x_tm)
    params = rf.from_flax_params(model.layer, variables["params"])
    chex.assert_trees_all_equal(
        model.apply(variables, x_tm, LENGTHS), model.layer(params, x_tm, LENGTHS)[0]
    )


def test_mask_and_resets_pass_through_linen_and_nnx():
    layer = rnnjax.LSTM(4, bidirectional=True)
    x, s0 = _inputs(layer)
    mask = jnp.array([[0, 1, 1, 0, 1, 1], [1] * 6, [0] * 6], bool)  # holes, left padding
    resets = jnp.array([[0, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 1], [0] * 6], bool)
    model = rf.LSTM(4, bidirectional=True, return_state=True)
    variables = model.init(jax.random.key(0), x)
    params = rf.from_flax_params(model.layer, variables["params"])
    want = layer(params, x, None, s0, mask=mask, resets=resets)
    got = model.apply(variables, x, initial_state=s0, mask=mask, resets=resets)
    chex.assert_trees_all_equal(got, want)
    nnx_model = rf.nnx.LSTM(IN, 4, bidirectional=True, return_state=True, rngs=nnx.Rngs(0))
    _, nnx_params = nnx_model.to_rnnjax()
    want = layer(nnx_params, x, None, s0, mask=mask, resets=resets)
    chex.assert_trees_all_equal(nnx_model(x, initial_state=s0, mask=mask, resets=resets), want)
