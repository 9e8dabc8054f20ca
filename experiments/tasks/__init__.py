"""Tasks of the shared trainer: each module supplies what differs between tasks.

A task module defines (see ``char_lm`` and ``classify`` for complete examples):

- ``validate(config)``: raises ``config_cli.ConfigError`` for task fields that cannot run;
- ``load_data(config, workdir)``: reads and checks the data (``rnnjax.data.DataError`` for bad
  data); saves its vocabulary in ``workdir`` the first time and reuses it on resume;
- ``build_model(config, data)``: a hashable model with ``init(key) -> params``;
- ``initial_carry(config, model)``: state carried from batch to batch, ``()`` for none;
- ``train_batch(config, data, step)``: a dict of NumPy arrays, a pure function of
  (``config.seed``, ``step``), so that a resumed run sees the batches an uninterrupted one would;
- ``make_loss_fn(config, model)``: ``loss_fn(params, carry, batch, key) -> (loss, (carry, aux))``;
- ``make_evaluator(config, model, data)``: ``evaluate(params, final) -> dict`` holding ``loss``;
- ``make_show(config, model, data)``: ``show(params, step) -> str`` logged at evaluations;
- ``tokens_per_step(config)`` and ``describe(data)`` (one line for the start of the log);
- optionally ``load_inference_data(config, workdir)`` and
  ``predict(config, model, params, data, input_path, output_path) -> str`` for
  ``experiments.predict``.
- optionally ``diagnostics_probe(config, model, data, params) -> (layer, layer_params, x,
  loss_fn)`` for ``config.diagnostics_every``: the ``rnnjax.Recurrent`` layer to diagnose, its
  parameters, a fixed ``[B, T, I]`` batch of its inputs and ``loss_fn(outputs [B, T, D*H]) ->
  scalar`` (the model's head and loss from there); the trainer logs
  ``rnnjax.diagnostics.summary`` of it to metrics.jsonl and TensorBoard (split "diagnostics")
  at step 1 and every ``diagnostics_every`` steps. See ``memory`` for an example.

A new task is one module here, its name in ``TASKS`` and one config in ``experiments/configs``.
"""

import importlib
from types import ModuleType

TASKS = {
    "char_lm": "experiments.tasks.char_lm",
    "classify": "experiments.tasks.classify",
    "forecast": "experiments.tasks.forecast",
    "frames": "experiments.tasks.frames",
    "memory": "experiments.tasks.memory",
    "sequential_images": "experiments.tasks.sequential_images",
    "translate": "experiments.tasks.translate",
}


def get(name: str) -> ModuleType:
    """The task module registered as ``name``; ``ValueError`` naming the known tasks otherwise."""
    if name not in TASKS:
        raise ValueError(f"config.task must be one of {sorted(TASKS)}, got {name!r}")
    return importlib.import_module(TASKS[name])
