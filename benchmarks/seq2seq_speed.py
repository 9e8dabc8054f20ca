"""Speed of the tutorial-sized seq2seq model: rnnjax against the PyTorch tutorial's code (eager).

    python -m benchmarks.seq2seq_speed                  # about 2 minutes on 2 CPU cores
    python -m benchmarks.seq2seq_speed --repeats 3 --json ''

The model of "NLP From Scratch" (``benchmarks/seq2seq_torch.py``): GRU encoder, Bahdanau
attention decoder (GRU, ``[embedding; context]`` input, started from the encoder's state),
hidden 128 = embedding, dropout 0.1, Adam 1e-3, vocabularies of the eng-fra task (2,723 English,
4,119 French words), batch 32, source and target length 10. Timed:

- ``train``: one training step (forward with teacher forcing, backward, Adam), the libraries
  alternating (``benchmarks._timing.interleaved``), medians; ``rnnjax`` is the layers' default
  backend (AUTO: the native kernels on CPU), ``rnnjax-scan`` and ``rnnjax-fused`` the encoder on
  the plain scan and on the fused backward pass;
- ``greedy`` / ``beam5``: sentences/s decoding the 736 test sources of ``eng-fra`` (random
  sources of the same lengths without ``../shared/data``) in batches of ``--decode-batch``,
  up to 10 tokens; the weights are untrained, so sentences rarely stop early (the worst case);
  torch runs the tutorial's greedy loop batched (no beam search in the tutorial);
- compile times: the first call of each jitted function less a steady call.
"""

import argparse
import functools
import json
import os
import pathlib
import time

import numpy as np

from benchmarks import _report, _timing

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"
FRA = SHARED / "eng-fra" / "fra.txt.gz"
PAD, BOS, EOS = 0, 1, 2


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=10)
    parser.add_argument("--src-vocab", type=int, default=2723)
    parser.add_argument("--tgt-vocab", type=int, default=4119)
    parser.add_argument("--decode-batch", type=int, default=64)
    parser.add_argument("--decode-sentences", type=int, default=736)
    parser.add_argument(
        "--backends", default="auto,scan,fused", help="the encoder's rnnjax backends to time"
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch's intra-op threads (on a loaded machine 1 avoids OpenMP's spin-waiting)",
    )
    parser.add_argument("--json", default="benchmarks/seq2seq_speed.json", help="'' = none")
    return parser.parse_args(argv)


def _sources(args, rng):
    """Encoded test sources ``[N, L]`` and lengths: the real split when present."""
    if FRA.exists() and args.src_vocab == 2723:
        from rnnjax.data import encode_sentences, load_translation

        data = load_translation(str(FRA))
        src, lengths = encode_sentences(data.test.sources, data.source_vocab, args.length)
        return src[: args.decode_sentences], lengths[: args.decode_sentences]
    lengths = rng.integers(3, args.length + 1, args.decode_sentences).astype(np.int32)
    src = rng.integers(4, args.src_vocab, (args.decode_sentences, args.length)).astype(np.int32)
    return np.where(np.arange(args.length)[None, :] < lengths[:, None], src, PAD), lengths


def _rnnjax(args, batch, backend="auto"):
    import jax
    import jax.numpy as jnp
    import optax

    import rnnjax
    from rnnjax import decoding
    from rnnjax.models import Decoder, Encoder, Seq2Seq, sequence_loss

    h = args.hidden
    model = Seq2Seq(
        Encoder(rnnjax.GRU(h, backend=backend), vocab_size=args.src_vocab, embed_size=h,
                dropout=0.1),
        Decoder(rnnjax.cells.GRUCell(h), vocab_size=args.tgt_vocab, embed_size=h, memory_size=h,
                attention="bahdanau", bridge="copy", dropout=0.1),
    )  # fmt: skip
    optimizer = optax.adam(1e-3)
    params = model.init(jax.random.key(0))
    opt_state = optimizer.init(params)

    def loss_fn(params, batch, key):
        src, src_len, tgt_in, tgt_out, tgt_len = batch
        logits, _ = model(params, src, src_len, tgt_in, dropout_key=key)
        return sequence_loss(logits, tgt_out, tgt_len)[0]

    @functools.partial(jax.jit, donate_argnums=(0, 1))  # as the trainer's step
    def train_step(params, opt_state, batch, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    state = {"params": params, "opt": opt_state, "step": 0}
    batch = tuple(jnp.asarray(x) for x in batch)

    def train():
        state["step"] += 1
        key = jax.random.fold_in(jax.random.key(1), state["step"])
        state["params"], state["opt"], loss = train_step(state["params"], state["opt"], batch, key)
        jax.block_until_ready(loss)

    encode = jax.jit(model.encode)

    def decode(src, lengths, beam):
        s, m = encode(state["params"], jnp.asarray(src), jnp.asarray(lengths))
        kwargs = {"bos_id": BOS, "eos_id": EOS, "max_length": args.length}
        if beam == 1:
            return jax.block_until_ready(
                decoding.greedy(model.decode_step, state["params"], m, s, **kwargs).tokens
            )
        out = decoding.beam_search(
            model.decode_step, state["params"], m, s, beam_size=beam, num_return=1, **kwargs
        )
        return jax.block_until_ready(out.tokens)

    return train, decode


def _torch(args, batch):
    import torch

    from benchmarks import seq2seq_torch

    encoder, decoder, step = seq2seq_torch.build(args.src_vocab, args.tgt_vocab, args.hidden)
    src, _, tgt_in, tgt_out, _ = (torch.as_tensor(x, dtype=torch.long) for x in batch)

    def decode(src_np, lengths, beam):
        del lengths  # the tutorial encodes padded sources as they are
        encoder.eval(), decoder.eval()
        with torch.no_grad():
            outputs, hidden = encoder(torch.as_tensor(src_np, dtype=torch.long))
            return decoder.greedy(outputs, hidden, BOS, args.length)

    return (lambda: step(src, tgt_in, tgt_out)), decode


def _compile_time(run):
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    start = time.perf_counter()
    run()
    return first - (time.perf_counter() - start)


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    from benchmarks.speed import machine

    torch.set_num_threads(args.torch_threads)
    rng = np.random.default_rng(0)
    b, n = args.batch, args.length
    tgt = rng.integers(4, args.tgt_vocab, (b, n)).astype(np.int32)
    batch = (
        rng.integers(4, args.src_vocab, (b, n)).astype(np.int32),
        np.full((b,), n, np.int32),
        np.concatenate([np.full((b, 1), BOS, np.int32), tgt[:, :-1]], axis=1),
        tgt,
        np.full((b,), n, np.int32),
    )
    report = {"machine": machine(), "args": vars(args), "results": {}}
    print(json.dumps(report["machine"]))
    trains, decode_j = {}, None
    for backend in args.backends.split(","):
        name = "rnnjax" if backend == "auto" else f"rnnjax-{backend}"
        trains[name], decode = _rnnjax(args, batch, backend)
        decode_j = decode_j or decode  # decoding runs the first backend's encoder
    train_t, decode_t = _torch(args, batch)
    compile_s = {f"{name} train step": _compile_time(run) for name, run in trains.items()}

    src, lengths = _sources(args, rng)
    db = args.decode_batch
    pad = -len(src) % db  # whole batches: one compiled shape
    src = np.concatenate([src, np.repeat(src[:1], pad, 0)])
    lengths = np.concatenate([lengths, np.repeat(lengths[:1], pad, 0)])

    def decode_all(decode, beam):
        return lambda: [
            decode(src[i : i + db], lengths[i : i + db], beam) for i in range(0, len(src), db)
        ]

    for name, beam in (("rnnjax greedy", 1), ("rnnjax beam5", 5)):
        compile_s[name] = _compile_time(lambda beam=beam: decode_j(src[:db], lengths[:db], beam))
    times = _timing.interleaved(trains | {"torch": train_t}, repeats=args.repeats)
    results = {f"train step {k} ms": _timing.median_ms(v) for k, v in times.items()}
    for name in trains:
        results[f"train step {name}/torch"] = (
            results[f"train step {name} ms"] / results["train step torch ms"]
        )
    runs = {
        "rnnjax greedy": decode_all(decode_j, 1),
        "rnnjax beam5": decode_all(decode_j, 5),
        "torch greedy": decode_all(decode_t, 1),
    }
    decode_times = _timing.interleaved(runs, repeats=max(1, args.repeats // 5))
    for name, samples in decode_times.items():
        results[f"{name} sentences/s"] = len(src) / (_timing.median_ms(samples) / 1e3)
    results.update({f"compile {k} s": v for k, v in compile_s.items()})
    report["results"] = results
    for key, value in results.items():
        print(f"{key:>34}: {value:10.3f}")
    _report.save(report, args.json)
    return report


if __name__ == "__main__":
    main()
