"""ponte.nn.layers — nn.Module (a dict of parameters and submodules, as mlx.nn.Module) and the
layers and activations of mlx.nn, each a thin wrapper over libponte's C layers."""
import math

import ponte.core as mx
from ponte.core import _nn as _c
from ponte.utils import tree_flatten, tree_unflatten

__all__ = [
    "Module", "Sequential", "Identity", "Linear", "Embedding", "LayerNorm", "RMSNorm", "Dropout",
    "ReLU", "ReLU6", "ReLU2", "LeakyReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Sigmoid", "LogSigmoid",
    "Softplus", "Softsign", "Mish", "Hardswish", "HardTanh", "Tanh", "GLU", "PReLU", "Softmax",
    "LogSoftmax", "Step", "Softshrink", "HardShrink", "Softmin",
    "relu", "relu6", "relu2", "leaky_relu", "elu", "selu", "celu", "gelu", "gelu_approx",
    "gelu_fast_approx", "silu", "sigmoid", "log_sigmoid", "softplus", "softsign", "mish",
    "hardswish", "hard_tanh", "tanh", "glu", "prelu", "softmax", "log_softmax", "step",
    "softshrink", "hard_shrink", "softmin",
]


def _unwrap(model, key, value, filter_fn, map_fn, is_leaf_fn):
    if is_leaf_fn(model, key, value):
        return map_fn(value)
    if isinstance(value, Module):
        return {k: _unwrap(value, k, v, filter_fn, map_fn, is_leaf_fn)
                for k, v in value.items() if filter_fn(value, k, v)}
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            tk = f"{key}.{k}"
            out[k] = _unwrap(model, tk, v, filter_fn, map_fn, is_leaf_fn) if filter_fn(model, tk, v) else {}
        return out
    if isinstance(value, (list, tuple)):
        out = []
        for i, v in enumerate(value):
            tk = f"{key}.{i}"
            out.append(_unwrap(model, tk, v, filter_fn, map_fn, is_leaf_fn) if filter_fn(model, tk, v) else {})
        return out
    raise RuntimeError("Unexpected leaf found while traversing the module")


class Module(dict):
    """Base class of layers: arrays, submodules and lists or dicts of them set as attributes
    are stored as the dict's items, which parameters(), update() and friends walk."""

    def __init__(self):
        self._no_grad = set()
        self._training = True

    # attributes that hold arrays / modules / containers live in the dict
    def __getattr__(self, key):
        if key in self:
            return self[key]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}")

    def __setattr__(self, key, val):
        if isinstance(val, (mx.array, dict, list, tuple)):
            if key in self.__dict__:
                del self.__dict__[key]
            self[key] = val
        else:
            if key in self:
                del self[key]
            super().__setattr__(key, val)

    def __delattr__(self, key):
        if key in self:
            del self[key]
        else:
            super().__delattr__(key)

    # dict's own equality would compare arrays elementwise; modules compare by identity
    __eq__ = object.__eq__
    __ne__ = object.__ne__
    __hash__ = object.__hash__

    @property
    def training(self):
        """Whether the module is in training mode (Dropout is active)."""
        return self._training

    @property
    def state(self):
        """The module's dict itself (parameters and other arrays, no filtering)."""
        return self

    def _extra_repr(self):
        return ""

    def __repr__(self):
        children = tree_flatten(self.children(), is_leaf=self.is_module)
        value = f"{type(self).__name__}({self._extra_repr()}"
        for k, v in children:
            body = "\n".join("  " + line for line in repr(v).split("\n"))[2:]
            value += f"\n  ({k}): {body}"
        if children:
            value += "\n"
        return value + ")"

    @staticmethod
    def is_module(value):
        return isinstance(value, Module)

    @staticmethod
    def valid_child_filter(module, key, value):
        return isinstance(value, (dict, list))

    @staticmethod
    def valid_parameter_filter(module, key, value):
        return isinstance(value, (dict, list, mx.array)) and not key.startswith("_")

    @staticmethod
    def trainable_parameter_filter(module, key, value):
        return Module.valid_parameter_filter(module, key, value) and key not in module._no_grad

    def filter_and_map(self, filter_fn, map_fn=None, is_leaf_fn=None):
        """A tree of the module's items that pass filter_fn, leaves mapped by map_fn."""
        map_fn = map_fn or (lambda x: x)
        is_leaf_fn = is_leaf_fn or (lambda m, k, v: not isinstance(v, (Module, dict, list, tuple)))
        return {k: _unwrap(self, k, v, filter_fn, map_fn, is_leaf_fn)
                for k, v in self.items() if filter_fn(self, k, v)}

    def parameters(self):
        """Every array of the module and its submodules, as a tree of dicts and lists."""
        return self.filter_and_map(self.valid_parameter_filter)

    def trainable_parameters(self):
        """The parameters that are not frozen."""
        return self.filter_and_map(self.trainable_parameter_filter)

    def children(self):
        """The direct submodules, as a tree."""
        return self.filter_and_map(self.valid_child_filter,
                                   is_leaf_fn=lambda m, k, v: isinstance(v, Module))

    def leaf_modules(self):
        """The submodules that have no submodules, as a tree."""
        def has_children(v):
            return any(isinstance(x, Module) for _, x in tree_flatten(v, is_leaf=self.is_module))

        return self.filter_and_map(
            self.valid_child_filter,
            is_leaf_fn=lambda m, k, v: isinstance(v, Module) and not has_children(v.children()))

    def update(self, parameters, strict=True):
        """Replaces the module's arrays by those of the tree parameters (same structure, or a
        part of it). strict: unknown names and non-array values are errors."""
        _update_params(self, parameters, strict)
        return self

    def apply(self, map_fn, filter_fn=None):
        """Maps every parameter (passing filter_fn, default: all) through map_fn in place."""
        filter_fn = filter_fn or Module.valid_parameter_filter
        self.update(self.filter_and_map(filter_fn, map_fn))
        return self

    def update_modules(self, modules, strict=True):
        """Replaces submodules by those in the tree modules."""
        _update_modules(self, modules, strict)
        return self

    def apply_to_modules(self, apply_fn):
        """Calls apply_fn(name, module) on this module and every submodule."""
        stack = [("", self)]
        while stack:
            prefix, mod = stack.pop()
            apply_fn(prefix, mod)
            prefix = "." + prefix if prefix else ""
            stack.extend(tree_flatten(mod.children(), prefix=prefix, is_leaf=self.is_module))
        return self

    def modules(self):
        """Every module (this one included)."""
        out = []
        self.apply_to_modules(lambda _, m: out.append(m))
        return out

    def named_modules(self):
        """[(name, module)] for every module (this one is named "")."""
        out = []
        self.apply_to_modules(lambda k, m: out.append((k, m)))
        return out

    def _keys_of(self, m):
        return [k for k, _ in tree_flatten(m.filter_and_map(
            lambda mm, k, v: not isinstance(v, Module) and mm.valid_parameter_filter(mm, k, v)))]

    def freeze(self, *, recurse=True, keys=None, strict=False):
        """Stops gradients for the given parameter names (default: all) of this module (and
        its submodules when recurse)."""
        def impl(_, m):
            local = self._keys_of(m) if keys is None else ([keys] if isinstance(keys, str) else list(keys))
            if strict:
                _validate_keys(m, local)
            m._no_grad.update(local)

        self.apply_to_modules(impl) if recurse else impl("", self)
        return self

    def unfreeze(self, *, recurse=True, keys=None, strict=False):
        """Undoes freeze for the given names (default: all)."""
        def impl(_, m):
            if keys is None:
                m._no_grad.clear()
            else:
                local = [keys] if isinstance(keys, str) else list(keys)
                if strict:
                    _validate_keys(m, local)
                m._no_grad.difference_update(local)

        self.apply_to_modules(impl) if recurse else impl("", self)
        return self

    def train(self, mode=True):
        """Sets training mode on this module and its submodules."""
        def impl(_, m):
            m._training = mode

        self.apply_to_modules(impl)
        return self

    def eval(self):
        """Sets evaluation mode (train(False))."""
        return self.train(False)

    def set_dtype(self, dtype, predicate=lambda t: mx.issubdtype(t, mx.floating)):
        """Casts the parameters whose dtype predicate accepts (default: the floating point ones;
        None: all) to dtype."""
        if predicate is None:
            predicate = lambda t: True  # noqa: E731
        self.apply(lambda x: x.astype(dtype) if predicate(x.dtype) else x)

    def load_weights(self, file_or_weights, strict=True):
        """Loads parameters from a .safetensors / .npz file or a list of (name, array). strict:
        the names and shapes must match the module's parameters exactly."""
        weights = file_or_weights
        if not isinstance(weights, list):
            weights = list(mx.load(str(weights)).items())
        if strict:
            new = dict(weights)
            cur = dict(tree_flatten(self.parameters()))
            extra = new.keys() - cur.keys()
            if extra:
                raise ValueError(f"Received parameters not in model: {' '.join(sorted(extra))}.")
            missing = cur.keys() - new.keys()
            if missing:
                raise ValueError(f"Missing parameters: {' '.join(sorted(missing))}.")
            for k, v in cur.items():
                if not isinstance(new[k], mx.array):
                    raise ValueError(f"Expected mx.array but received {type(new[k])} for parameter {k}")
                if v.shape != new[k].shape:
                    raise ValueError(f"Expected shape {v.shape} but received shape {new[k].shape} for parameter {k}")
        if weights:
            self.update(tree_unflatten(weights), strict=False)
        return self

    def save_weights(self, file):
        """Saves the parameters to a .safetensors or .npz file."""
        file = str(file)
        params = dict(tree_flatten(self.parameters()))
        if file.endswith(".npz"):
            mx.savez(file, **params)
        elif file.endswith(".safetensors"):
            mx.save_safetensors(file, params)
        else:
            raise ValueError("Unsupported file extension. Use '.npz' or '.safetensors'.")


def _check_array(new, strict):
    if strict and not isinstance(new, mx.array):
        raise ValueError(f"Received invalid type: {type(new).__name__}.")


def _update_params(dst, params, strict):
    # module-level (not a nested function) so that no reference cycle keeps arrays alive
    if isinstance(params, dict):
        for k, new in params.items():
            if k in dst:
                cur = dst[k]
                if isinstance(cur, mx.array):
                    _check_array(new, strict)
                    dst[k] = new
                else:
                    _update_params(cur, new, strict)
            elif strict:
                raise ValueError(f'Module does not have parameter named "{k}".')
    elif isinstance(params, list):
        for i, new in enumerate(params):
            cur = dst[i]
            if isinstance(cur, mx.array):
                _check_array(new, strict)
                dst[i] = new
            else:
                _update_params(cur, new, strict)
    elif strict:
        raise ValueError(f"Received invalid type: {type(params).__name__}.")


def _update_modules(dst, new, strict):
    """Walks new (dicts and lists) beside dst: a module replaces a module; containers recurse.
    strict: a key or index dst lacks, or anything but a module, dict or list in new (an empty
    dict where dst has something else is allowed), is a ValueError."""
    if isinstance(new, dict):
        slots = ((k, k in dst) for k in new)
    elif isinstance(new, list):
        slots = ((i, i < len(dst)) for i in range(len(new)))
    else:
        if strict:
            raise ValueError(f"Received invalid type: {type(new).__name__}.")
        return
    for k, present in slots:
        if not present:
            if strict:
                raise ValueError(f'Module does not have sub-module named "{k}".'
                                 if isinstance(new, dict) else
                                 f"List index {k} is out of bounds for destination of length {len(dst)}.")
            continue
        cur, v = dst[k], new[k]
        if isinstance(cur, Module) and isinstance(v, Module):
            dst[k] = v
        elif isinstance(cur, (dict, list)):
            _update_modules(cur, v, strict)
        elif strict and not (isinstance(v, dict) and not v):
            raise ValueError(f"Received invalid type: {type(v).__name__}.")


def _validate_keys(m, keys):
    params = m.filter_and_map(m.valid_parameter_filter)
    for k in keys:
        if k not in params:
            raise KeyError(f"Module doesn't contain member {k}.")


class Sequential(Module):
    """Calls its layers in order: Sequential(l1, l2)(x) == l2(l1(x))."""

    def __init__(self, *modules):
        super().__init__()
        self.layers = list(modules)

    def __call__(self, x):
        for m in self.layers:
            x = m(x)
        return x


class Identity(Module):
    """Returns its input."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def __call__(self, x):
        return x


class Linear(Module):
    """y = x @ weight.T + bias, weight (output_dims, input_dims) initialized uniformly in
    [-1/sqrt(input_dims), 1/sqrt(input_dims)] as MLX does."""

    def __init__(self, input_dims, output_dims, bias=True):
        super().__init__()
        scale = math.sqrt(1.0 / input_dims)
        self.weight = mx.random.uniform(low=-scale, high=scale, shape=(output_dims, input_dims))
        if bias:
            self.bias = mx.random.uniform(low=-scale, high=scale, shape=(output_dims,))

    def _extra_repr(self):
        return f"input_dims={self.weight.shape[1]}, output_dims={self.weight.shape[0]}, bias={'bias' in self}"

    def __call__(self, x):
        return _c.linear(x, self["weight"], self.get("bias"))


class Embedding(Module):
    """A lookup table of num_embeddings vectors of size dims (initialized N(0, 1/dims))."""

    def __init__(self, num_embeddings, dims):
        super().__init__()
        scale = math.sqrt(1.0 / dims)
        self.weight = mx.random.normal(shape=(num_embeddings, dims), scale=scale)

    def _extra_repr(self):
        return f"{self.weight.shape[0]}, {self.weight.shape[1]}"

    def __call__(self, x):
        return _c.embedding(x, self["weight"])

    def as_linear(self, x):
        """x @ weight.T: the embedding used as an output projection."""
        return x @ self["weight"].T


class LayerNorm(Module):
    """Normalizes the last axis to zero mean and unit variance, then scales and shifts."""

    def __init__(self, dims, eps=1e-5, affine=True, bias=True):
        super().__init__()
        if affine:
            self.weight = mx.ones((dims,))
            if bias:
                self.bias = mx.zeros((dims,))
        self.eps = eps
        self.dims = dims

    def _extra_repr(self):
        return f"{self.dims}, eps={self.eps}, affine={'weight' in self}"

    def __call__(self, x):
        return _c.layer_norm(x, self.get("weight"), self.get("bias"), self.eps)


class RMSNorm(Module):
    """Divides the last axis by its root mean square, then scales."""

    def __init__(self, dims, eps=1e-5):
        super().__init__()
        self.weight = mx.ones((dims,))
        self.eps = eps

    def _extra_repr(self):
        return f"{self.weight.shape[0]}, eps={self.eps}"

    def __call__(self, x):
        return _c.rms_norm(x, self["weight"], self.eps)


class Dropout(Module):
    """Zeroes elements with probability p while training (scaling the rest by 1/(1-p))."""

    def __init__(self, p=0.5):
        super().__init__()
        if p < 0 or p >= 1:
            raise ValueError(f"The dropout probability {p} is not in [0, 1)")
        self._p_1 = 1 - p

    def _extra_repr(self):
        return f"p={1 - self._p_1}"

    def __call__(self, x):
        if self._p_1 == 1 or not self.training:
            return x
        return _c.dropout(x, 1 - self._p_1)


# ───────────────────────────── activations ─────────────────────────────

relu = _c.relu
relu6 = _c.relu6
relu2 = _c.relu2
selu = _c.selu
gelu = _c.gelu
gelu_approx = _c.gelu_approx
gelu_fast_approx = _c.gelu_fast_approx
silu = _c.silu
log_sigmoid = _c.log_sigmoid
softplus = _c.softplus
softsign = _c.softsign
mish = _c.mish
hardswish = _c.hardswish


def sigmoid(x):
    """1 / (1 + exp(-x))."""
    return _c.sigmoid(x)


def tanh(x):
    """The hyperbolic tangent."""
    return _c.tanh(x)


def leaky_relu(x, negative_slope=0.01):
    """max(x, negative_slope * x)."""
    return _c.leaky_relu(x, negative_slope)


def elu(x, alpha=1.0):
    """x if x > 0 else alpha * (exp(x) - 1)."""
    return _c.elu(x, alpha)


def celu(x, alpha=1.0):
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."""
    return _c.celu(x, alpha)


def hard_tanh(x, min_val=-1.0, max_val=1.0):
    """x clipped to [min_val, max_val]."""
    return _c.hard_tanh(x, min_val, max_val)


def glu(x, axis=-1):
    """a * sigmoid(b) for the two halves a, b of x along axis."""
    return _c.glu(x, axis)


def prelu(x, alpha):
    """max(0, x) + alpha * min(0, x)."""
    return _c.prelu(x, alpha)


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along axis."""
    return mx.softmax(x, axis=axis)


def log_softmax(x, axis=-1):
    """x - logsumexp(x) along axis."""
    return _c.log_softmax(x, axis)


def step(x, threshold=0.0):
    """1 where x > threshold, else 0 (int32)."""
    return _c.step(x, threshold)


def softshrink(x, lambd=0.5):
    """x - sign(x) * lambd where |x| > lambd, else 0."""
    return _c.softshrink(x, lambd)


def hard_shrink(x, lambd=0.5):
    """x where |x| > lambd, else 0."""
    return _c.hard_shrink(x, lambd)


def softmin(x, axis=-1):
    """softmax(-x) along axis."""
    return _c.softmin(x, axis)


def _activation(name, fn, doc, params=()):
    def __init__(self, *args, **kwargs):
        Module.__init__(self)
        for (pname, default), value in zip(params, list(args) + [None] * len(params)):
            object.__setattr__(self, "_" + pname, kwargs.get(pname, default if value is None else value))

    def __call__(self, x):
        return fn(x, *(getattr(self, "_" + p) for p, _ in params))

    return type(name, (Module,), {"__init__": __init__, "__call__": __call__, "__doc__": doc})


ReLU = _activation("ReLU", relu, "Applies relu.")
ReLU6 = _activation("ReLU6", relu6, "Applies relu6.")
ReLU2 = _activation("ReLU2", relu2, "Applies relu2: max(x, 0)^2.")
SELU = _activation("SELU", selu, "Applies selu.")
SiLU = _activation("SiLU", silu, "Applies silu.")
Sigmoid = _activation("Sigmoid", sigmoid, "Applies sigmoid.")
LogSigmoid = _activation("LogSigmoid", log_sigmoid, "Applies log_sigmoid.")
Softplus = _activation("Softplus", softplus, "Applies softplus.")
Softsign = _activation("Softsign", softsign, "Applies softsign.")
Mish = _activation("Mish", mish, "Applies mish.")
Hardswish = _activation("Hardswish", hardswish, "Applies hardswish.")
Tanh = _activation("Tanh", tanh, "Applies tanh.")
LeakyReLU = _activation("LeakyReLU", leaky_relu, "Applies leaky_relu.", (("negative_slope", 0.01),))
ELU = _activation("ELU", elu, "Applies elu.", (("alpha", 1.0),))
CELU = _activation("CELU", celu, "Applies celu.", (("alpha", 1.0),))
HardTanh = _activation("HardTanh", hard_tanh, "Applies hard_tanh.", (("min_val", -1.0), ("max_val", 1.0)))
GLU = _activation("GLU", glu, "Applies glu.", (("axis", -1),))
Softmax = _activation("Softmax", softmax, "Applies softmax.", (("axis", -1),))
LogSoftmax = _activation("LogSoftmax", log_softmax, "Applies log_softmax.", (("axis", -1),))
Step = _activation("Step", step, "Applies step.", (("threshold", 0.0),))
Softshrink = _activation("Softshrink", softshrink, "Applies softshrink.", (("lambd", 0.5),))
HardShrink = _activation("HardShrink", hard_shrink, "Applies hard_shrink.", (("lambd", 0.5),))
Softmin = _activation("Softmin", softmin, "Applies softmin.", (("axis", -1),))


class GELU(Module):
    """GELU: approx 'none' / 'precise' (erf), 'tanh' (tanh approximation), 'fast' (sigmoid)."""

    def __init__(self, approx="none"):
        super().__init__()
        fns = {"none": gelu, "precise": gelu_approx, "tanh": gelu_approx, "fast": gelu_fast_approx}
        if approx not in fns:
            raise ValueError(f"The approximation should be in {list(fns)} but '{approx}' was given")
        self._act = fns[approx]

    def __call__(self, x):
        return self._act(x)


class PReLU(Module):
    """prelu with a learned slope (num_parameters of them, initialized to init)."""

    def __init__(self, num_parameters=1, init=0.25):
        super().__init__()
        self.weight = mx.full([num_parameters], init)

    def __call__(self, x):
        return prelu(x, self["weight"])
