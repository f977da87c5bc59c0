"""ponte.optimizers.schedulers — mlx.optimizers' learning-rate schedules: callables step ->
array over libponte's C schedules (join_schedules composes them in Python)."""
import ponte.core as mx
from ponte.core import _nn as _c

__all__ = ["exponential_decay", "step_decay", "cosine_decay", "linear_schedule", "join_schedules"]


def exponential_decay(init, decay_rate):
    """init * decay_rate ** step."""
    return _c.Schedule("exponential_decay", init, decay_rate)


def step_decay(init, decay_rate, step_size):
    """init * decay_rate ** (step // step_size)."""
    return _c.Schedule("step_decay", init, decay_rate, step_size)


def cosine_decay(init, decay_steps, end=0.0):
    """Cosine decay from init to end over decay_steps, then end."""
    return _c.Schedule("cosine_decay", init, decay_steps, end)


def linear_schedule(init, end, steps):
    """Linear from init to end over steps, then end."""
    if steps < 1:
        raise ValueError(f"steps must be greater than 0, but got {steps}.")
    return _c.Schedule("linear", init, end, steps)


def join_schedules(schedules, boundaries):
    """schedules[0] before boundaries[0], then schedules[i] (counting steps from boundaries[i-1])."""
    if len(schedules) == 0:
        raise ValueError("Must provide at least 1 schedule to join.")
    if len(schedules) != len(boundaries) + 1:
        raise ValueError(f"Received {len(boundaries)} boundaries but expected {len(schedules) - 1}.")

    def schedule(step):
        step = int(step.item()) if isinstance(step, mx.array) else int(step)
        out, offset = schedules[0], 0
        for s, b in zip(schedules[1:], boundaries):
            if step >= b:
                out, offset = s, b
        return out(step - offset)

    return schedule
