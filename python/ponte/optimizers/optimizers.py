"""ponte.optimizers.optimizers — mlx.optimizers' Optimizer classes. The built-in rules run on
libponte's C update rules (pn_optim_*, _RuleOptimizer): the state lives in C; Python flattens
trees to names and back. MultiOptimizer maps onto the C parameter groups
(pn_optimizer_add_group). Optimizer itself is MLX's base class for optimizers written in
Python: a subclass defines init_single / apply_single over one parameter and its state dict."""
import math

import ponte.core as mx
from ponte.core import _nn as _c
from ponte.utils import tree_flatten, tree_map, tree_unflatten

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "AdaDelta", "Adamax", "Lion",
           "Adafactor", "Muon", "MultiOptimizer", "clip_grad_norm"]


class _State(dict):
    """Optimizer.state of the built-in (C rule) optimizers, one dict per optimizer kept for its
    life, as MLX's state dict is: the C optimizer stays the source of truth for "step" and the
    per-parameter slot arrays, which are copied in (refresh) every time the state is read;
    "learning_rate" is the rate of the last update; any other key a caller puts in stays beside
    them. Writing "learning_rate" sets the rate, writing "step" or a tree of arrays sets the C
    state. mx.compile refreshes it (_compile_pull) and writes it back (_compile_push) around a
    compiled call."""

    def __init__(self, opt):
        super().__init__()
        self._opt = opt
        self._c_keys = set()  # the keys the last refresh copied from the C state
        self._hidden = set()  # "step"/"learning_rate" left out after a state assignment without them

    def _fill(self, lr):
        """Copies the C state (and lr, unless None) in, replacing what the last refresh copied,
        keeping the other keys."""
        o = self._opt
        items = [(k, v) for k, v in o._c.state() if k != "step"]
        tree = o._state_tree(items, o.step, lr)
        for k in self._hidden:
            tree.pop(k, None)
        for k in self._c_keys - set(tree):
            dict.pop(self, k, None)
        dict.update(self, tree)
        self._c_keys = set(tree)

    def _refresh(self):
        o = self._opt
        self._fill(None if o._lr is None else o.learning_rate)
        return self

    def __setitem__(self, key, value):
        o = self._opt
        self._hidden.discard(key)
        if key == "learning_rate":
            if not mx._tracing():
                o._set_lr_value(value)
        elif key == "step":
            o._c.set_state(["step"], [value if isinstance(value, mx.array) else mx.array(value, mx.uint64)])
        else:
            o._push_arrays(tree_flatten(value, prefix="." + str(key)) if not isinstance(value, mx.array)
                           else [(str(key), value)])
        dict.__setitem__(self, key, value)

    def _compile_pull(self):
        self._fill(self.get("learning_rate"))

    def _compile_push(self):
        # "step" goes to C as it is, traced inside mx.compile's trace (an update there counts
        # it with ops); an optimizer whose rule reads the step on the host keeps a real count
        keep = self._opt._array_step
        self._opt._push_arrays([(k, v) for k, v in tree_flatten(dict(self))
                                if (keep or k != "step") and k != "learning_rate"])


class Optimizer:
    """MLX's base class: an optimizer written in Python defines init_single(parameter, state)
    (fills the parameter's state dict) and apply_single(gradient, parameter, state) (returns the
    updated parameter), and sets its hyperparameters with _maybe_schedule(name, value or
    schedule). The state is a tree {"step": ..., <hyperparameters>..., <parameter path>: {...}}
    shaped like the parameters; it is a plain tree of arrays, so mx.compile can take it as
    state."""

    def __init__(self, schedulers=None):
        self._initialized = False
        self._state = {"step": mx.array(0, mx.uint64)}
        self._schedulers = dict(schedulers or {})

    def update(self, model, gradients):
        """Applies one step to model (a Module) in place."""
        model.update(self.apply_gradients(gradients, model))

    def init(self, parameters):
        """Creates the state of every parameter not seen yet (otherwise done at the first
        update): an empty dict per array, filled by init_single."""

        def grow(params, state):
            if isinstance(params, (list, tuple)):
                state = list(state)
                state[:len(params)] = [grow(p, st) for p, st in zip(params, state)]
                state.extend(tree_map(lambda _: {}, list(params[len(state):])))
                return type(params)(state) if type(params) in (list, tuple) else state
            if isinstance(params, dict):
                for k, v in params.items():
                    state[k] = grow(v, state[k]) if k in state else tree_map(lambda _: {}, v)
                return state
            return state

        grow(parameters, self._state)
        tree_map(lambda p, st: self.init_single(p, st) if isinstance(p, mx.array) else None,
                 parameters, self._state)
        self._initialized = True

    def init_single(self, parameter, state):
        """Fills state (a dict) for one parameter."""
        raise NotImplementedError

    def apply_single(self, gradient, parameter, state):
        """The parameter after one step with gradient; updates state in place."""
        raise NotImplementedError

    def apply_gradients(self, gradients, parameters):
        """The parameters updated by one step (a tree shaped like gradients): the schedules
        advance, the step counts, then apply_single runs per parameter."""
        if not self._initialized:
            self.init(gradients)
        for name, schedule in self._schedulers.items():
            self.state[name] = schedule(self.step)
        self.state["step"] = self.step + 1
        return tree_map(self.apply_single, gradients, parameters, self.state)

    def _maybe_schedule(self, name, param):
        """Sets hyperparameter name to param, or to param(step) at every update when param is
        a schedule (callable)."""
        if callable(param):
            self._schedulers[name] = param
            value = param(self.step)
        else:
            value = mx.array(param)
        self.state[name] = value

    @property
    def state(self):
        """The optimizer's state tree."""
        return self._state

    @state.setter
    def state(self, state):
        self._initialized = False
        self._state = state

    @property
    def step(self):
        """The number of updates done (an array)."""
        return self.state["step"]

    @property
    def learning_rate(self):
        return self.state["learning_rate"]

    @learning_rate.setter
    def learning_rate(self, value):
        self.state["learning_rate"] = mx.array(value)


class _RuleOptimizer(Optimizer):
    """The built-in optimizers: update(model, gradients) applies one step of a C rule to the
    model's parameters. learning_rate is a float or a schedule (a callable step -> rate). Inside
    a traced function (mx.compile) the step is an array of the state and the update counts it
    and computes the scheduled rate with ops (_array_step), as MLX's optimizers do."""

    _array_step = True  # the rule takes step and learning rate as arrays

    def __init__(self, learning_rate):
        self._lr = learning_rate
        self._c = _c.Optimizer(*self._spec())

    def _hyper(self):
        """(kind, the arguments of pn_optim_<kind> after the learning rate)."""
        raise NotImplementedError

    def __getstate__(self):
        # copy.copy / copy.deepcopy / pickle (as MLX's Python optimizers allow): the attributes
        # and the C optimizer's state arrays; __setstate__ builds a fresh C optimizer from them
        d = dict(self.__dict__)
        c = d.pop("_c")
        d["_c_state"] = list(c.state()) if c is not None else []
        st = d.pop("_st", None)  # the state dict: its own keys and hidden ones travel as data
        if st is not None:
            d["_st_extra"] = ({k: v for k, v in st.items() if k not in st._c_keys}, set(st._hidden))
        return d

    def __setstate__(self, d):
        d = dict(d)
        items = d.pop("_c_state")
        extra = d.pop("_st_extra", None)
        self.__dict__.update(d)
        self._c = None
        self._new_c()
        if items:
            self._c.set_state([k for k, _ in items], [v for _, v in items])
        if extra is not None:
            st = self._state_obj()
            dict.update(st, extra[0])
            st._hidden = extra[1]

    def _new_c(self):
        self._c = _c.Optimizer(*self._spec())

    def _spec(self):
        kind, hyper = self._hyper()
        return kind, self._lr_at(0), hyper

    def _lr_at(self, step):
        lr = self._lr
        if lr is None:
            return math.nan
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
        """The learning rate of the last update (before any update: of the first), an array: the
        value MLX keeps in its state, the schedule at the step the update started from."""
        if self._lr is None:
            raise KeyError("learning_rate")
        step = self.step
        if mx._tracing():  # the step may be traced (mx.compile's state): ops, no host read
            if not callable(self._lr):
                return mx.array(self._lr_at(0), mx.float32)
            lr = self._lr(mx.maximum(step, 1) - 1)
            return lr.astype(mx.float32) if isinstance(lr, mx.array) else mx.array(lr, mx.float32)
        return mx.array(self._lr_at(max(int(step.item()) - 1, 0)), mx.float32)

    @learning_rate.setter
    def learning_rate(self, value):
        self._lr = value

    @staticmethod
    def _state_tree(items, step, lr):
        tree = tree_unflatten(items) if items else {}
        if not isinstance(tree, dict):
            tree = {"state": tree}
        tree["step"] = step
        if lr is not None:
            tree["learning_rate"] = lr
        return tree

    def _state_obj(self):
        st = self.__dict__.get("_st")
        if st is None:
            st = self._st = _State(self)
        return st

    @property
    def state(self):
        """The optimizer's state, a dict kept for the optimizer's life: {"step": ...,
        "learning_rate": ..., <param>: {<slot>: array}, <any other key put there>: ...}."""
        return self._state_obj()._refresh()

    @state.setter
    def state(self, state):
        """Replaces the whole state, as MLX's: the C state starts afresh from the arrays of
        state ("step", the slots), its "learning_rate" becomes the rate, other keys are kept as
        given, and what state lacks is gone (a parameter's slots start again from zero)."""
        state = dict(state)
        items = [(k, v) for k, v in tree_flatten(state) if k != "learning_rate" and isinstance(v, mx.array)]
        self._new_c()
        self._push_arrays(items)
        if "learning_rate" in state and not mx._tracing():
            self._set_lr_value(state["learning_rate"])
        st = self._st = _State(self)
        dict.update(st, state)
        st._hidden = {"step", "learning_rate"} - set(state)
        st._refresh()

    def _push_arrays(self, items):
        """Sets the (flat name, array) items in the C state (the others are kept)."""
        items = [(k, v) for k, v in items if isinstance(v, mx.array)]
        if items:
            self._c.set_state([k for k, _ in items], [v for _, v in items])

    def _set_lr_value(self, value):
        """A learning rate written through the state: an array or number sets a constant rate
        (a schedule stays the rate of a scheduled optimizer, as MLX's schedules overwrite it)."""
        if callable(self._lr):
            return
        self._lr = float(value.item()) if isinstance(value, mx.array) else float(value)

    def init(self, parameters):
        """Creates the state of the parameters that have none yet, as MLX's init does: one
        update of copies with zero gradients (the rules' slots start from zero gradients: zeros,
        except Adafactor's second moments, which hold their epsilon), the step kept."""
        flat = [(k, p) for k, p in tree_flatten(parameters) if isinstance(p, mx.array)]
        have = {k.rsplit(".", 1)[0] for k, _ in self._c.state() if k != "step"}
        new = [(k, p) for k, p in flat if k not in have]
        if not new:
            return
        step = self.step
        names = [k for k, _ in new]
        zeros = [mx.zeros_like(p) for _, p in new]
        self._c.update(names, [mx.array(p) for _, p in new], names, zeros, self._lr_at(0), ())
        self._c.set_state(["step"], [step])

    def apply_gradients(self, gradients, parameters):
        """The parameters updated by one step of the rule (a tree shaped like gradients)."""
        if self._array_step and mx._tracing():  # step and rate as arrays (a traced update)
            lr = self._lr(self.step) if callable(self._lr) else self._lr
            lr = lr.astype(mx.float32) if isinstance(lr, mx.array) else mx.array(lr, mx.float32)
            return self._apply(gradients, parameters, lr, ())
        lr = self._lr_at(self.step.item()) if callable(self._lr) else self._lr_at(0)
        return self._apply(gradients, parameters, lr, ())

    def _apply(self, gradients, parameters, lr, group_lrs):
        flat_g = [(k, g) for k, g in tree_flatten(gradients) if isinstance(g, mx.array)]
        params = dict(tree_flatten(parameters))
        names = [k for k, _ in flat_g if isinstance(params.get(k), mx.array)]
        if len(names) != len(flat_g):
            missing = [k for k, _ in flat_g if k not in params]
            raise ValueError(f"Gradients for unknown parameters: {' '.join(missing)}")
        args = (names, [params[k] for k in names], [k for k, _ in flat_g], [g for _, g in flat_g], lr)
        new = self._c.update_arrays(*args) if isinstance(lr, mx.array) else self._c.update(*args, group_lrs)
        return tree_unflatten(list(zip(names, new)))

    def update(self, model, gradients):
        """Applies one step to model (a Module) in place."""
        model.update(self.apply_gradients(gradients, model))


def _betas(betas):
    b = list(betas)
    if len(b) != 2:
        raise ValueError("betas must have two entries.")
    return float(b[0]), float(b[1])


class SGD(_RuleOptimizer):
    """Stochastic gradient descent with momentum, weight decay, dampening and Nesterov."""

    def __init__(self, learning_rate, momentum=0.0, weight_decay=0.0, dampening=0.0, nesterov=False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening.")
        self.momentum, self.weight_decay, self.dampening, self.nesterov = momentum, weight_decay, dampening, nesterov
        super().__init__(learning_rate)

    def _hyper(self):
        return "sgd", (self.momentum, self.weight_decay, self.dampening, self.nesterov)


class Adam(_RuleOptimizer):
    """Adam (bias correction optional, as in MLX)."""

    def __init__(self, learning_rate, betas=(0.9, 0.999), eps=1e-8, bias_correction=False):
        self.betas, self.eps, self.bias_correction = _betas(betas), eps, bias_correction
        super().__init__(learning_rate)

    def _hyper(self):
        return "adam", (self.betas[0], self.betas[1], self.eps, self.bias_correction)


class AdamW(_RuleOptimizer):
    """Adam with decoupled weight decay."""

    def __init__(self, learning_rate, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, bias_correction=False):
        self.betas, self.eps, self.weight_decay, self.bias_correction = _betas(betas), eps, weight_decay, bias_correction
        super().__init__(learning_rate)

    def _hyper(self):
        return "adamw", (self.betas[0], self.betas[1], self.eps, self.weight_decay, self.bias_correction)


class RMSprop(_RuleOptimizer):
    """RMSprop."""

    def __init__(self, learning_rate, alpha=0.99, eps=1e-8):
        if alpha < 0.0:
            raise ValueError(f"RMSprop alpha should be >=0, {alpha} was provided instead")
        if eps < 0.0:
            raise ValueError(f"RMSprop epsilon should be >0, {eps} was provided instead")
        self.alpha, self.eps = alpha, eps
        super().__init__(learning_rate)

    def _hyper(self):
        return "rmsprop", (self.alpha, self.eps)


class Adagrad(_RuleOptimizer):
    """Adagrad."""

    def __init__(self, learning_rate, eps=1e-8):
        if eps < 0.0:
            raise ValueError(f"Epsilon value should be >=0, {eps} was provided instead")
        self.eps = eps
        super().__init__(learning_rate)

    def _hyper(self):
        return "adagrad", (self.eps,)


class AdaDelta(_RuleOptimizer):
    """AdaDelta."""

    def __init__(self, learning_rate, rho=0.9, eps=1e-6):
        if rho < 0.0:
            raise ValueError(f"rho should be >=0, {rho} was provided instead")
        if eps < 0.0:
            raise ValueError(f"epsilon should be >=0, {eps} was provided instead")
        self.rho, self.eps = rho, eps
        super().__init__(learning_rate)

    def _hyper(self):
        return "adadelta", (self.rho, self.eps)


class Adamax(_RuleOptimizer):
    """Adamax (the infinity-norm variant of Adam)."""

    def __init__(self, learning_rate, betas=(0.9, 0.999), eps=1e-8):
        if eps < 0.0:
            raise ValueError(f"Epsilon value should be >=0, {eps} was provided instead")
        self.betas, self.eps = _betas(betas), eps
        super().__init__(learning_rate)

    def _hyper(self):
        return "adamax", (self.betas[0], self.betas[1], self.eps)


class Lion(_RuleOptimizer):
    """Lion."""

    def __init__(self, learning_rate, betas=(0.9, 0.99), weight_decay=0.0):
        self.betas, self.weight_decay = _betas(betas), weight_decay
        super().__init__(learning_rate)

    def _hyper(self):
        return "lion", (self.betas[0], self.betas[1], self.weight_decay)


class Adafactor(_RuleOptimizer):
    """Adafactor (Shazeer & Stern, 2018): factored second moments for parameters with two or
    more dimensions, a relative step size (learning_rate ignored while relative_step) scaled by
    the parameter's RMS, and updates clipped to RMS clip_threshold. beta_1 adds a first moment."""

    _array_step = False  # the relative step size needs the step on the host

    def __init__(self, learning_rate=None, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8,
                 beta_1=None, weight_decay=0.0, scale_parameter=True, relative_step=True,
                 warmup_init=False):
        eps = tuple(eps)
        if len(eps) != 2:
            raise ValueError(f"eps must have two entries, got {len(eps)}.")
        if learning_rate is None and not relative_step:
            raise ValueError("Adafactor needs a learning_rate when relative_step is False.")
        if clip_threshold <= 0:
            raise ValueError(f"clip_threshold must be positive, got {clip_threshold}.")
        self.eps, self.clip_threshold, self.decay_rate = (float(eps[0]), float(eps[1])), clip_threshold, decay_rate
        self.beta_1, self.weight_decay = beta_1, weight_decay
        self.scale_parameter, self.relative_step, self.warmup_init = scale_parameter, relative_step, warmup_init
        super().__init__(learning_rate)

    def _hyper(self):
        beta_1 = math.nan if self.beta_1 is None else float(self.beta_1)
        return "adafactor", (self.eps[0], self.eps[1], self.clip_threshold, self.decay_rate, beta_1,
                             self.weight_decay, self.scale_parameter, self.relative_step, self.warmup_init)


class Muon(_RuleOptimizer):
    """Muon: momentum SGD whose update of every parameter with two or more dimensions is
    orthogonalised by Newton-Schulz iterations (beyond 2-d on the (shape[0], -1) matrix) and
    scaled by sqrt(max(1, shape[-2] / shape[-1])); other parameters take the momentum step."""

    def __init__(self, learning_rate, momentum=0.95, weight_decay=0.01, nesterov=True, ns_steps=5):
        if int(ns_steps) != ns_steps or ns_steps < 0:
            raise ValueError(f"ns_steps must be a non-negative integer, got {ns_steps}.")
        self.momentum, self.weight_decay, self.nesterov, self.ns_steps = momentum, weight_decay, nesterov, int(ns_steps)
        super().__init__(learning_rate)

    def _hyper(self):
        return "muon", (self.momentum, self.weight_decay, self.nesterov, self.ns_steps)


class MultiOptimizer(_RuleOptimizer):
    """Several optimizers in one: a parameter goes to the first optimizer whose filter(path,
    array) is true, the last optimizer (which has no filter) takes the rest. Runs as one C
    optimizer whose parameter groups carry the optimizers' rules; a parameter's optimizer is
    decided the first time it is seen. The state is {"states": [one tree per optimizer]}."""

    _array_step = False  # groups take their own (host) rates

    def __init__(self, optimizers, filters=[]):
        if len(filters) != len(optimizers) - 1:
            raise ValueError(f"Given {len(filters)} filters but {len(optimizers) - 1} needed.")
        for o in optimizers:
            if not isinstance(o, _RuleOptimizer) or isinstance(o, MultiOptimizer):
                raise TypeError("MultiOptimizer takes Ponte's built-in optimizers (SGD, Adam, ...) other than "
                                "MultiOptimizer.")
        self.optimizers = list(optimizers)
        self.filters = list(filters) + [lambda *args, **kwargs: True]
        self._owner = {}  # parameter path -> index of its optimizer
        self._c = None
        self._rebuild()

    def _new_c(self):
        self._rebuild()

    def _rebuild(self):
        """A fresh C optimizer with one group per optimizer but the last, keeping the state."""
        c = _c.Optimizer(*self.optimizers[-1]._spec())
        for i, o in enumerate(self.optimizers[:-1]):
            c.add_group([k for k, j in self._owner.items() if j == i], *o._spec())
        if self._c is not None:
            items = self._c.state()
            if items:
                c.set_state([k for k, _ in items], [v for _, v in items])
        self._c = c

    def _assign(self, flat):
        changed = False
        for k, a in flat:
            if k not in self._owner:
                i = next(i for i, f in enumerate(self.filters) if f(k, a))
                self._owner[k] = i
                changed |= i < len(self.optimizers) - 1
        if changed:
            self._rebuild()

    def init(self, parameters):
        """Assigns the parameters to their optimizers (otherwise done at the first update)."""
        self._assign([(k, a) for k, a in tree_flatten(parameters) if isinstance(a, mx.array)])

    def apply_gradients(self, gradients, parameters):
        self._assign([(k, g) for k, g in tree_flatten(gradients) if isinstance(g, mx.array)])
        step = self.step.item()
        lrs = [o._lr_at(step) for o in self.optimizers]
        return self._apply(gradients, parameters, lrs[-1], lrs[:-1])

    @property
    def state(self):
        step, last = self.step, len(self.optimizers) - 1
        parts = [[] for _ in self.optimizers]
        for k, v in self._c.state():
            if k != "step":
                parts[self._owner.get(k.rsplit(".", 1)[0], last)].append((k, v))
        last_step = max(int(step.item()) - 1, 0)  # the rate of the last update, as MLX's state
        return {"states": [self._state_tree(p, step, None if o._lr is None else
                                            mx.array(o._lr_at(last_step), mx.float32))
                           for o, p in zip(self.optimizers, parts)]}

    @state.setter
    def state(self, state):
        if not isinstance(state, dict) or "states" not in state or len(state["states"]) != len(self.optimizers):
            raise ValueError("Invalid state provided")
        items = {}
        for i, s in enumerate(state["states"]):
            for k, v in tree_flatten(s):
                if k == "learning_rate" or not isinstance(v, mx.array):
                    continue
                if k != "step":
                    self._owner[k.rsplit(".", 1)[0]] = i
                items[k] = v
        self._rebuild()
        if items:
            self._c.set_state(list(items), list(items.values()))

    @property
    def learning_rate(self):
        """The first optimizer's learning rate."""
        if self.optimizers[0]._lr is None:
            raise KeyError("learning_rate")
        return mx.array(self.optimizers[0]._lr_at(max(int(self.step.item()) - 1, 0)), mx.float32)

    @learning_rate.setter
    def learning_rate(self, value):
        for o in self.optimizers:
            o._lr = value

def clip_grad_norm(grads, max_norm):
    """Scales grads so that their global L2 norm is at most max_norm; returns (clipped grads,
    the norm before clipping)."""
    flat = [(k, g) for k, g in tree_flatten(grads) if isinstance(g, mx.array)]
    if not flat:
        return grads, mx.array(0.0)
    names = [k for k, _ in flat]
    # integer gradients scale as float32, as MLX's
    arrays = [g if mx.issubdtype(g.dtype, mx.inexact) else g.astype(mx.float32) for _, g in flat]
    items, norm = _c.clip_grad_norm(names, arrays, float(max_norm))
    return tree_unflatten(items), norm
