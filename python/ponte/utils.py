"""ponte.utils — helpers over trees (nested lists, tuples and dicts), as mlx.utils: flattening
to dotted keys ("layers.0.weight"), rebuilding, mapping and reducing."""
from collections import defaultdict

__all__ = ["tree_flatten", "tree_unflatten", "tree_map", "tree_map_with_path", "tree_reduce",
           "tree_merge"]


def tree_map(fn, tree, *rest, is_leaf=None):
    """Applies fn to the leaves of tree (and the matching leaves of the trees in rest), keeping
    the structure: lists stay lists, tuples tuples, dicts dicts."""
    if is_leaf is not None and is_leaf(tree):
        return fn(tree, *rest)
    if isinstance(tree, (list, tuple)):
        items = [tree_map(fn, child, *(r[i] for r in rest), is_leaf=is_leaf)
                 for i, child in enumerate(tree)]
        return type(tree)(items) if isinstance(tree, list) or type(tree) is tuple else type(tree)(*items)
    if isinstance(tree, dict):
        return {k: tree_map(fn, child, *(r[k] for r in rest), is_leaf=is_leaf)
                for k, child in tree.items()}
    return fn(tree, *rest)


def tree_map_with_path(fn, tree, *rest, is_leaf=None, path=None):
    """As tree_map, but fn receives the leaf's dotted path first: fn(path, leaf, *rest)."""
    if is_leaf is not None and is_leaf(tree):
        return fn(path, tree, *rest)
    if isinstance(tree, (list, tuple)):
        prefix = f"{path}." if path else ""
        items = [tree_map_with_path(fn, child, *(r[i] for r in rest), is_leaf=is_leaf,
                                    path=f"{prefix}{i}") for i, child in enumerate(tree)]
        return type(tree)(items) if isinstance(tree, list) or type(tree) is tuple else type(tree)(*items)
    if isinstance(tree, dict):
        prefix = f"{path}." if path else ""
        return {k: tree_map_with_path(fn, child, *(r[k] for r in rest), is_leaf=is_leaf,
                                      path=f"{prefix}{k}") for k, child in tree.items()}
    return fn(path, tree, *rest)


def _flatten(t, key, is_leaf, add):
    if is_leaf is None or not is_leaf(t):
        if isinstance(t, (list, tuple)):
            for i, child in enumerate(t):
                _flatten(child, f"{key}.{i}", is_leaf, add)
            return
        if isinstance(t, dict):
            for k, child in t.items():
                _flatten(child, f"{key}.{k}", is_leaf, add)
            return
    add(key[1:], t)


def tree_flatten(tree, prefix="", is_leaf=None, destination=None):
    """The leaves of tree as [(dotted key, leaf), ...] (or into the dict destination).
    tree_flatten([[[0]]]) is [("0.0.0", 0)]; a leaf at the root gets the key prefix."""
    if destination is not None:
        _flatten(tree, prefix, is_leaf, destination.__setitem__)
        return destination
    out = []
    _flatten(tree, prefix, is_leaf, lambda k, v: out.append((k, v)))
    return out


def tree_unflatten(tree):
    """Rebuilds a tree from [(dotted key, leaf), ...] (or a flat dict): levels whose keys are
    all integers become lists (missing entries are empty dicts)."""
    items = list(tree.items()) if isinstance(tree, dict) else list(tree)
    if len(items) == 1 and items[0][0] == "":
        return items[0][1]
    children = defaultdict(list)
    for key, value in items:
        head, _, rest = key.partition(".")
        children[head].append((rest, value))
    if all(k.isdigit() for k in children):
        keys = sorted(children, key=int)
        out = [{} for _ in range(int(keys[-1]) + 1)] if keys else []
        for k in keys:
            out[int(k)] = tree_unflatten(children[k])
        return out
    return {k: tree_unflatten(v) for k, v in children.items()}


def tree_reduce(fn, tree, initializer=None, is_leaf=None):
    """Folds fn(accumulator, leaf) over the leaves in order (the first leaf starts the
    accumulator when initializer is None)."""
    acc = initializer
    first = initializer is None
    for _, leaf in tree_flatten(tree, is_leaf=is_leaf):
        if first:
            acc, first = leaf, False
        else:
            acc = fn(acc, leaf)
    return acc


def tree_merge(tree_a, tree_b, merge_fn=None):
    """Merges two trees with disjoint leaves (merge_fn(a, b) resolves leaves present in both)."""
    if isinstance(tree_a, (dict, list, tuple)) and len(tree_a) == 0:
        return tree_b
    if isinstance(tree_b, (dict, list, tuple)) and len(tree_b) == 0:
        return tree_a
    if isinstance(tree_a, dict) and isinstance(tree_b, dict):
        out = dict(tree_a)
        for k, v in tree_b.items():
            out[k] = tree_merge(out[k], v, merge_fn) if k in out else v
        return out
    if isinstance(tree_a, (list, tuple)) and isinstance(tree_b, (list, tuple)):
        n = max(len(tree_a), len(tree_b))
        a = list(tree_a) + [{}] * (n - len(tree_a))
        b = list(tree_b) + [{}] * (n - len(tree_b))
        return type(tree_a)(tree_merge(x, y, merge_fn) for x, y in zip(a, b))
    if merge_fn is None:
        raise ValueError("[tree_merge] The trees have a leaf in common; pass merge_fn.")
    return merge_fn(tree_a, tree_b)
