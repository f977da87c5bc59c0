"""ponte.optimizers — mlx.optimizers: optimizers over libponte's C update rules, and
learning-rate schedules."""
from ponte.optimizers.optimizers import *  # noqa: F401,F403
from ponte.optimizers.schedulers import *  # noqa: F401,F403
