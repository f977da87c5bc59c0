"""ponte.optimizers.schedulers — mlx.optimizers' learning-rate schedules: callables step ->
array over libponte's C schedules (join_schedules composes them in Python). Under mx.compile
the optimizer's step is a traced array: the schedules then compute with ops, as MLX's do."""
import math

import ponte.core as mx
from ponte.core import _nn as _c

__all__ = ["exponential_decay", "step_decay", "cosine_decay", "linear_schedule", "join_schedules"]


class _Schedule:
    """A schedule: the C schedule's value (float32) for a number or an evaluated step; while a
    transformation traces (the step an input of mx.compile's trace), ops on the step array."""

    def __init__(self, c, traced):
        self._c, self._traced = c, traced

    def __copy__(self):
        return self  # immutable, shared by copies as MLX's schedule functions are

    def __deepcopy__(self, memo):
        return self

    def __call__(self, step):
        if isinstance(step, mx.array) and mx._tracing():
            return self._traced(step)
        return self._c(step)


def exponential_decay(init, decay_rate):
    """init * decay_rate ** step."""
    return _Schedule(_c.Schedule("exponential_decay", init, decay_rate),
                     lambda step: init * (decay_rate ** step.astype(mx.float32)))


def step_decay(init, decay_rate, step_size):
    """init * decay_rate ** (step // step_size)."""
    return _Schedule(_c.Schedule("step_decay", init, decay_rate, step_size),
                     lambda step: init * (decay_rate ** (step // step_size).astype(mx.float32)))


def cosine_decay(init, decay_steps, end=0.0):
    """Cosine decay from init to end over decay_steps, then end."""
    def traced(step):
        s = mx.minimum(step, decay_steps).astype(mx.float32)
        return end + 0.5 * (1.0 + mx.cos((math.pi / decay_steps) * s)) * (init - end)
    return _Schedule(_c.Schedule("cosine_decay", init, decay_steps, end), traced)


def linear_schedule(init, end, steps):
    """Linear from init to end over steps, then end."""
    if steps < 1:
        raise ValueError(f"steps must be greater than 0, but got {steps}.")
    return _Schedule(_c.Schedule("linear", init, end, steps),
                     lambda step: mx.minimum(step, steps).astype(mx.float32) * ((end - init) / steps) + init)


def join_schedules(schedules, boundaries):
    """schedules[0] before boundaries[0], then schedules[i] (counting steps from boundaries[i-1])."""
    if len(schedules) == 0:
        raise ValueError("Must provide at least 1 schedule to join.")
    if len(schedules) != len(boundaries) + 1:
        raise ValueError(f"Received {len(boundaries)} boundaries but expected {len(schedules) - 1}.")

    def schedule(step):
        if isinstance(step, mx.array) and mx._tracing():  # ops, as MLX's join_schedules
            out = schedules[0](step)
            for s, b in zip(schedules[1:], boundaries):
                out = mx.where(step < b, out, s(step - b))
            return out
        step = int(step.item()) if isinstance(step, mx.array) else int(step)
        out, offset = schedules[0], 0
        for s, b in zip(schedules[1:], boundaries):
            if step >= b:
                out, offset = s, b
        r = out(step - offset)
        return r if isinstance(r, mx.array) else mx.array(r)  # an array, as MLX's

    return schedule
