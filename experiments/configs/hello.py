r"""The classic first RNN exercise: predict the next character of "hello".

  python -m experiments.train --config=experiments/configs/hello.py --workdir=/tmp/hello

Learns h->e, e->l, l->l, l->o (the last two need the recurrent state): accuracy 1.0 at the final
evaluation, in about 10 seconds including start-up and compilation. Doubles as a smoke test.
"""

from experiments.configs import char_lm


def get_config():
    c = char_lm.get_config()
    c.num_steps = 150
    c.batch_size = 1
    c.seq_len = 4
    c.learning_rate = 0.03
    c.warmup_steps = 0
    c.schedule = "constant"
    c.log_every = 50
    c.eval_every = 50
    c.eval_batch_size = 1
    c.eval_max_tokens = 0
    c.checkpoint_every = 1000
    c.sample_length = 8
    c.sample_temperature = 0.5
    c.model.cell = "rnn"
    c.model.hidden_size = 16
    c.model.embed_size = 8
    c.data.text = "hello"
    c.data.val_fraction = 0.0
    c.data.tbptt = False
    return c
