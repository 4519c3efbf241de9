"""The run framework over the step library of `cnnjax.train`: what a training *run* is.

`config` (every field, resolved and validated), `components` (the parts a config builds:
model, task, optimizer, compiled steps, data), `loop` (`train_and_evaluate`: resume, steps,
logging, validation, checkpoints, preemption, the NaN guard), `run` (what the loop keeps
between steps), `evaluation` and `predict` (eval/predict of saved runs), `reporting` and
`trackers` (metrics.jsonl, TensorBoard, MLflow, W&B, the progress line). The step library
(`cnnjax.train`: state, steps, tasks, optimizers, schedules, data parallelism) knows nothing
of runs, workdirs or configs; this package imports it, never the other way round.
"""
