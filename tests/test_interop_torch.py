"""rnnjax.interop.torch against PyTorch itself: outputs, final states and every gradient."""

import importlib
import itertools
import re
import subprocess
import sys
import typing

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rnnjax  # noqa: E402
from rnnjax.interop import torch as interop  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-6)
KINDS = ("rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru")
B = 4


class Case(typing.NamedTuple):
    kind: str
    num_layers: int
    bidirectional: bool
    bias: bool
    batch_first: bool
    lengths: bool
    h0: bool
    seed: int

    def __str__(self):
        flags = ["bi" if self.bidirectional else "uni", "bias" if self.bias else "nobias"]
        flags += ["bf" if self.batch_first else "tm", "len" if self.lengths else "full"]
        flags += ["h0" if self.h0 else "noh0", f"s{self.seed}"]
        return "-".join([self.kind, f"L{self.num_layers}", *flags])


def _cases():
    """Every kind x direction x h_0, the other options drawn; then fully random draws."""
    rng = np.random.default_rng(0)
    cases = []
    for kind, bidirectional, h0 in itertools.product(KINDS, [False, True], [False, True]):
        layers, (bias, bf, lengths) = int(rng.integers(1, 3)), rng.integers(0, 2, size=3) == 1
        cases.append(
            Case(kind, layers, bidirectional, bool(bias), bool(bf), bool(lengths), h0, len(cases))
        )
    for _ in range(10):
        kind = KINDS[rng.integers(len(KINDS))]
        flags = [bool(f) for f in rng.integers(0, 2, size=5)]
        cases.append(Case(kind, int(rng.integers(1, 4)), *flags, len(cases)))
    return cases


def _module(kind, input_size, hidden_size, proj_size=0, **config):
    if kind.startswith("rnn"):
        return torch.nn.RNN(input_size, hidden_size, nonlinearity=kind[4:], **config)
    if kind.startswith("lstm"):
        return torch.nn.LSTM(input_size, hidden_size, proj_size=proj_size, **config)
    return torch.nn.GRU(input_size, hidden_size, **config)


def _jax_leaf(params, name, num_directions):
    """The rnnjax leaf of a torch parameter name, in torch's layout (transposed back)."""
    kind, part, layer, reverse = re.fullmatch(
        r"(weight|bias)_(ih|hh|hr)_l(\d+)(_reverse)?", name
    ).groups()
    leaf = getattr(params[int(layer) * num_directions + bool(reverse)], f"{kind[0]}_{part}")
    return np.asarray(leaf).T


def run_case(case):
    """Runs one configuration in both libraries; returns ``[(what, rnnjax value, torch value)]``."""
    torch.manual_seed(case.seed)
    rng = np.random.default_rng(case.seed)
    steps, input_size, hidden = (int(n) for n in rng.integers([3, 1, 2], [8, 6, 7]))
    proj = int(rng.integers(1, hidden)) if case.kind == "lstm_proj" else 0
    config = dict(num_layers=case.num_layers, bias=case.bias, batch_first=case.batch_first)
    module = _module(
        case.kind, input_size, hidden, proj, bidirectional=case.bidirectional, **config
    )
    layer, params = interop.from_torch(module)
    assert len(jax.tree.leaves(params)) == len(list(module.parameters()))

    shape = (B, steps, input_size) if case.batch_first else (steps, B, input_size)
    x = torch.randn(shape, requires_grad=True)
    count = case.num_layers * (2 if case.bidirectional else 1)
    features = [proj or hidden] + [hidden] * case.kind.startswith("lstm")  # h_0 (and c_0)
    h0 = [torch.randn(count, B, f, requires_grad=True) for f in features] if case.h0 else []
    lengths = None
    if case.lengths:  # unsorted, with a sequence of one step and a full one
        lengths = rng.permutation([1, steps, *rng.integers(1, steps + 1, size=B - 2)])

    # PyTorch: packed sequences when there are lengths, padded back to T with zeros.
    inputs = x
    if lengths is not None:
        inputs = torch.nn.utils.rnn.pack_padded_sequence(
            x, torch.as_tensor(lengths), batch_first=case.batch_first, enforce_sorted=False
        )
    torch_h0 = None if not h0 else tuple(h0) if len(h0) == 2 else h0[0]
    out, state = module(inputs, torch_h0)
    if lengths is not None:
        out = torch.nn.utils.rnn.pad_packed_sequence(
            out, batch_first=case.batch_first, total_length=steps
        )[0]
    states = list(state) if isinstance(state, tuple) else [state]
    weights = [torch.randn(t.shape) for t in [out, *states]]  # a random projection as the loss
    sum(torch.sum(t * w) for t, w in zip([out, *states], weights, strict=True)).backward()

    def loss(params, x, s0):
        out, state = layer(params, x, lengths, s0)
        leaves = [out, *jax.tree.leaves(state)]
        total = sum(
            jnp.sum(t * jnp.asarray(w.numpy())) for t, w in zip(leaves, weights, strict=True)
        )
        return total, leaves

    s0 = None if not h0 else tuple(t.detach().numpy() for t in h0)
    s0 = s0[0] if s0 is not None and len(s0) == 1 else s0
    # One compilation per case is several times faster than running the scans op by op (the
    # compile-speed settings are the whole run's, tests/conftest.py).
    grad_fn = jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))
    grads, leaves = grad_fn(params, x.detach().numpy(), s0)
    names = ["output", "h_n", "c_n"]
    pairs = [
        (n, got, want.detach().numpy())
        for n, got, want in zip(names, leaves, [out, *states], strict=False)
    ]
    pairs.append(("d/dx", grads[1], x.grad.numpy()))
    for name, got, want in zip(["d/dh_0", "d/dc_0"], jax.tree.leaves(grads[2]), h0, strict=False):
        pairs.append((name, got, want.grad.numpy()))
    for name, p in module.named_parameters():
        pairs.append(
            (f"d/d{name}", _jax_leaf(grads[0], name, layer.num_directions), p.grad.numpy())
        )
    return pairs


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("case", _cases(), ids=str)
def test_matches_pytorch_outputs_states_and_gradients(case):
    pairs = run_case(case)
    assert len(pairs) >= 4
    for name, got, want in pairs:
        assert np.shape(got) == want.shape, name
        np.testing.assert_allclose(got, want, err_msg=name, **TOL)


ROUND_TRIP = {
    "rnn_relu_bi_bf": lambda: torch.nn.RNN(
        3, 4, 2, nonlinearity="relu", bidirectional=True, batch_first=True
    ),
    "lstm_proj_dropout": lambda: torch.nn.LSTM(3, 5, 2, proj_size=2, dropout=0.25),
    "lstm_nobias_bi": lambda: torch.nn.LSTM(2, 4, 3, bias=False, bidirectional=True),
    "gru_bi": lambda: torch.nn.GRU(3, 4, 2, bidirectional=True, batch_first=True),
    "gru_bf16": lambda: torch.nn.GRU(3, 4).to(torch.bfloat16),
}
CONFIG = (
    "input_size hidden_size num_layers bias batch_first dropout bidirectional proj_size mode "
    "nonlinearity"
).split()


def _assert_same_module(got, want):
    assert type(got) is type(want)
    for name in CONFIG:
        assert getattr(got, name, None) == getattr(want, name, None), name
    got_sd, want_sd = got.state_dict(), want.state_dict()
    assert list(got_sd) == list(want_sd)
    for key in want_sd:
        assert got_sd[key].dtype == want_sd[key].dtype, key
        assert torch.equal(got_sd[key], want_sd[key]), key


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_to_torch_round_trip_is_exact(name):
    torch.manual_seed(0)
    module = ROUND_TRIP[name]()
    _assert_same_module(interop.to_torch(*interop.from_torch(module)), module)


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_state_dict_file_round_trip(name, tmp_path):
    torch.manual_seed(0)
    module = ROUND_TRIP[name]()
    torch.save(module.state_dict(), tmp_path / "weights.pt")
    nonlinearity = {"nonlinearity": module.nonlinearity} if name.startswith("rnn") else {}
    layer, params = interop.load_state_dict_file(
        tmp_path / "weights.pt",
        kind=name[: name.index("_")],
        batch_first=module.batch_first,
        dropout=module.dropout,
        **nonlinearity,
    )
    want_layer, want_params = interop.from_torch(module)
    assert layer == want_layer
    jax.tree.map(np.testing.assert_array_equal, params, want_params)
    _assert_same_module(interop.to_torch(layer, params), module)


def test_from_state_dict_reads_numpy_values_under_a_prefix():
    torch.manual_seed(0)
    model = torch.nn.ModuleDict(
        {"encoder": torch.nn.LSTM(3, 5, 2, proj_size=2), "head": torch.nn.Linear(2, 1)}
    )
    state_dict = {k: v.numpy() for k, v in model.state_dict().items()}
    layer, params = interop.from_state_dict(state_dict, kind="lstm", prefix="encoder.")
    assert layer == rnnjax.LSTM(5, 2, proj_size=2)  # batch_first=True, rnnjax's default
    _, want = interop.from_torch(model["encoder"])
    jax.tree.map(np.testing.assert_array_equal, params, want)


def test_a_pickled_module_file_is_refused(tmp_path):
    torch.save(torch.nn.GRU(3, 4), tmp_path / "module.pt")  # the whole module: needs unpickling
    with pytest.raises(ValueError, match=r"torch.save\(module.state_dict\(\), path\)"):
        interop.load_state_dict_file(tmp_path / "module.pt", kind="gru")


@pytest.mark.parametrize("module", [torch.nn.LSTMCell(3, 4), torch.nn.Linear(3, 4)], ids=str)
def test_from_torch_rejects_other_modules(module):
    with pytest.raises(ValueError, match="torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU, got"):
        interop.from_torch(module)


def _gru_state_dict():
    torch.manual_seed(0)
    return dict(torch.nn.GRU(3, 4, 2).state_dict())


@pytest.mark.parametrize(
    "edit,kwargs,message",
    [
        (lambda sd: sd.pop("bias_hh_l1"), {}, r"missing keys \['bias_hh_l1'\]"),
        (lambda sd: sd.update(weight_hr_l0=torch.ones(2, 4)), {}, r"unexpected keys \['weight_hr"),
        (
            lambda sd: sd.update(weight_ih_l2=sd["weight_ih_l1"]),
            {},
            r"missing keys \[.weight_hh_l2",
        ),
        (lambda sd: sd.update(weight_hh_l1=torch.ones(12, 5)), {}, r"\['weight_hh_l1'\] must"),
        (lambda sd: sd.update(weight_ih_l0=torch.ones(12)), {}, r"'weight_ih_l0'\] must have"),
        (lambda sd: None, {"kind": "lstm"}, "must"),
        (lambda sd: None, {"kind": "transformer"}, "kind must be one of"),
        (lambda sd: None, {"nonlinearity": "relu"}, "nonlinearity applies to kind='rnn'"),
        (lambda sd: None, {"prefix": "encoder."}, "no key of state_dict starts with prefix"),
        (lambda sd: sd.clear(), {}, "no 'weight_ih_l0'"),
    ],
)
def test_from_state_dict_names_what_does_not_fit(edit, kwargs, message):
    state_dict = _gru_state_dict()
    edit(state_dict)
    with pytest.raises(ValueError, match=message):
        interop.from_state_dict(state_dict, **{"kind": "gru", **kwargs})


def test_to_torch_names_what_pytorch_cannot_hold():
    params = rnnjax.GRU(4).init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="reset_after must be True"):
        interop.to_torch(rnnjax.GRU(4, reset_after=False), params)
    with pytest.raises(ValueError, match=r"params\[0\].w_ih must be shape \(3, 20\)"):
        interop.to_torch(rnnjax.LSTM(5), params)
    with pytest.raises(ValueError, match=r"params\[0\].w_hr must be None"):
        interop.to_torch(rnnjax.GRU(4), (params[0]._replace(w_hr=jnp.ones((4, 2))),))
    with pytest.raises(ValueError, match="tuple of 2 CellParams"):
        interop.to_torch(rnnjax.GRU(4, 2), params)
    with pytest.raises(ValueError, match="layer must be an rnnjax.RNN"):
        interop.to_torch(rnnjax.cells.GRUCell(4), params)


def test_layer_takes_torch_tensors_as_the_module_does():
    torch.manual_seed(0)
    module = torch.nn.LSTM(3, 4, proj_size=2)
    layer, params = interop.from_torch(module)
    x, lengths = torch.randn(5, 2, 3), torch.tensor([2, 5])
    h_0 = (torch.randn(1, 2, 2), torch.randn(1, 2, 4))
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    with torch.no_grad():
        out, (h_n, c_n) = module(packed, h_0)
    out = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=5)[0]
    got_out, (got_h, got_c) = layer(params, x, lengths, h_0)
    for got, want in [(got_out, out), (got_h, h_n), (got_c, c_n)]:
        np.testing.assert_allclose(got, want.numpy(), **TOL)


@pytest.mark.skipif(jax.config.jax_enable_x64, reason="float64 is kept with jax_enable_x64")
def test_float64_weights_warn_that_jax_keeps_float32():
    with pytest.warns(UserWarning, match="jax_enable_x64 is off"):
        _, params = interop.from_torch(torch.nn.GRU(2, 3).double())
    assert params[0].w_ih.dtype == jnp.float32


def test_import_rnnjax_does_not_import_torch():
    code = (
        "import sys, rnnjax, rnnjax.interop\n"
        "assert 'torch' not in sys.modules, 'import rnnjax imported torch'\n"
        "assert callable(rnnjax.interop.torch.from_torch) and 'torch' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_torch_asks_for_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    monkeypatch.delitem(sys.modules, "rnnjax.interop.torch")
    with pytest.raises(ImportError, match=r"pip install rnnjax\[torch\]"):
        importlib.import_module("rnnjax.interop.torch")
