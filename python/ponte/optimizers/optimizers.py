"""ponte.optimizers.optimizers — mlx.optimizers' Optimizer classes over libponte's C update
rules (pn_optim_*): the state lives in C; Python flattens trees to names and back."""
import ponte.core as mx
from ponte.core import _nn as _c
from ponte.utils import tree_flatten, tree_unflatten

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "AdaDelta", "Adamax", "Lion",
           "clip_grad_norm"]


class Optimizer:
    """Base class: update(model, gradients) applies one step of the rule to the model's
    parameters. learning_rate is a float or a schedule (a callable step -> rate)."""

    def __init__(self, learning_rate):
        self._lr = learning_rate
        self._c = _c.Optimizer(*self._hyper(0.0))

    def _hyper(self, lr):
        raise NotImplementedError

    def _lr_at(self, step):
        lr = self._lr
        return float(lr(step)) if callable(lr) else float(lr)

    @property
    def step(self):
        """The number of updates done (an array)."""
        for name, a in self._c.state():
            if name == "step":
                return a
        return mx.array(0, mx.uint64)

    @property
    def learning_rate(self):
        """The learning rate of the next update (an array)."""
        return mx.array(self._lr_at(self.step.item()), mx.float32)

    @learning_rate.setter
    def learning_rate(self, value):
        self._lr = value

    @property
    def state(self):
        """The optimizer's state as a tree: {"step": ..., "learning_rate": ..., <param>: {...}}."""
        items = self._c.state()
        tree = tree_unflatten(items) if items else {}
        if not isinstance(tree, dict):
            tree = {"state": tree}
        tree.setdefault("step", mx.array(0, mx.uint64))
        tree["learning_rate"] = self.learning_rate
        return tree

    @state.setter
    def state(self, state):
        items = [(k, v) for k, v in tree_flatten(state) if k != "learning_rate" and isinstance(v, mx.array)]
        if items:
            names, arrays = zip(*items)
            self._c.set_state(list(names), list(arrays))

    def init(self, parameters):
        """Accepted for compatibility: the state is created at the first update."""

    def apply_gradients(self, gradients, parameters):
        """The parameters updated by one step of the rule (a tree shaped like gradients)."""
        flat_g = [(k, g) for k, g in tree_flatten(gradients) if isinstance(g, mx.array)]
        params = dict(tree_flatten(parameters))
        names = [k for k, _ in flat_g if isinstance(params.get(k), mx.array)]
        if len(names) != len(flat_g):
            missing = [k for k, _ in flat_g if k not in params]
            raise ValueError(f"Gradients for unknown parameters: {' '.join(missing)}")
        lr = self._lr_at(self.step.item())
        new = self._c.update(names, [params[k] for k in names], [k for k, _ in flat_g],
                             [g for _, g in flat_g], lr)
        return tree_unflatten(list(zip(names, new)))

    def update(self, model, gradients):
        """Applies one step to model (a Module) in place."""
        model.update(self.apply_gradients(gradients, model))


def _betas(betas):
    b = list(betas)
    if len(b) != 2:
        raise ValueError("betas must have two entries.")
    return float(b[0]), float(b[1])


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, weight decay, dampening and Nesterov."""

    def __init__(self, learning_rate, momentum=0.0, weight_decay=0.0, dampening=0.0, nesterov=False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening.")
        self.momentum, self.weight_decay, self.dampening, self.nesterov = momentum, weight_decay, dampening, nesterov
        super().__init__(learning_rate)

    def _hyper(self, lr):
        return ("sgd", lr, self.momentum, self.weight_decay, self.dampening, 0.0, self.nesterov)


class Adam(Optimizer):
    """Adam (bias correction optional, as in MLX)."""

    def __init__(self, learning_rate, betas=(0.9, 0.999), eps=1e-8, bias_correction=False):
        self.betas, self.eps, self.bias_correction = _betas(betas), eps, bias_correction
        super().__init__(learning_rate)

    def _hyper(self, lr):
        return ("adam", lr, self.betas[0], self.betas[1], self.eps, 0.0, self.bias_correction)


class AdamW(Optimizer):
    """Adam with decoupled weight decay."""

    def __init__(self, learning_rate, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, bias_correction=False):
        self.betas, self.eps, self.weight_decay, self.bias_correction = _betas(betas), eps, weight_decay, bias_correction
        super().__init__(learning_rate)

    def _hyper(self, lr):
        return ("adamw", lr, self.betas[0], self.betas[1], self.eps, self.weight_decay, self.bias_correction)


class RMSprop(Optimizer):
    """RMSprop."""

    def __init__(self, learning_rate, alpha=0.99, eps=1e-8):
        if alpha < 0.0:
            raise ValueError(f"RMSprop alpha should be >=0, {alpha} was provided instead")
        if eps < 0.0:
            raise ValueError(f"RMSprop epsilon should be >0, {eps} was provided instead")
        self.alpha, self.eps = alpha, eps
        super().__init__(learning_rate)

    def _hyper(self, lr):
        return ("rmsprop", lr, self.alpha, self.eps)


class Adagrad(Optimizer):
    """Adagrad."""

    def __init__(self, learning_rate, eps=1e-8):
        if eps < 0.0:
            raise ValueError(f"Epsilon value should be >=0, {eps} was provided instead")
        self.eps = eps
        super().__init__(learning_rate)

    def _hyper(self, lr):
        return ("adagrad", lr, self.eps)


class AdaDelta(Optimizer):
    """AdaDelta."""

    def __init__(self, learning_rate, rho=0.9, eps=1e-6):
        if rho < 0.0:
            raise ValueError(f"rho should be >=0, {rho} was provided instead")
        if eps < 0.0:
            raise ValueError(f"epsilon should be >=0, {eps} was provided instead")
        self.rho, self.eps = rho, eps
        super().__init__(learning_rate)

    def _hyper(self, lr):
        return ("adadelta", lr, self.rho, self.eps)


class Adamax(Optimizer):
    """Adamax (the infinity-norm variant of Adam)."""

    def __init__(self, learning_rate, betas=(0.9, 0.999), eps=1e-8):
        if eps < 0.0:
            raise ValueError(f"Epsilon value should be >=0, {eps} was provided instead")
        self.betas, self.eps = _betas(betas), eps
        super().__init__(learning_rate)

    def _hyper(self, lr):
        return ("adamax", lr, self.betas[0], self.betas[1], self.eps)


class Lion(Optimizer):
    """Lion."""

    def __init__(self, learning_rate, betas=(0.9, 0.99), weight_decay=0.0):
        self.betas, self.weight_decay = _betas(betas), weight_decay
        super().__init__(learning_rate)

    def _hyper(self, lr):
        return ("lion", lr, self.betas[0], self.betas[1], self.weight_decay)


def clip_grad_norm(grads, max_norm):
    """Scales grads so that their global L2 norm is at most max_norm; returns (clipped grads,
    the norm before clipping)."""
    flat = [(k, g) for k, g in tree_flatten(grads) if isinstance(g, mx.array)]
    if not flat:
        return grads, mx.array(0.0)
    names = [k for k, _ in flat]
    items, norm = _c.clip_grad_norm(names, [g for _, g in flat], float(max_norm))
    return tree_unflatten(items), norm
