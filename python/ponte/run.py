"""ponte.run — runs a program written for MLX on Ponte: `python -m ponte.run script.py [args]`
(or `ponte-run script.py [args]`) makes `mlx`, `mlx.core`, `mlx.nn`, `mlx.optimizers` and
`mlx.utils` resolve to ponte's modules, then runs the script as __main__."""
import importlib
import importlib.abc
import importlib.util
import runpy
import sys
import types

__all__ = ["install_mlx_alias", "main"]


class _PonteFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves any mlx.<path> not aliased already to the module ponte.<path> itself (say
    mlx.nn.utils, mlx.optimizers.optimizers), never to a second copy of its file: without
    it, the mlx packages' __path__ (ponte's directories) would load ponte's files again under
    mlx.* names, with their own classes and without what ponte's packages attach to them."""

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith("mlx."):
            return None
        try:
            module = importlib.import_module("ponte." + fullname[4:])
        except ImportError:
            return None  # MLX-only modules stay missing
        return importlib.util.spec_from_loader(fullname, self, origin=getattr(module, "__file__", None))

    def create_module(self, spec):
        return importlib.import_module("ponte." + spec.name[4:])

    def exec_module(self, module):
        pass


def install_mlx_alias():
    """Maps the mlx package and its submodules to ponte's in sys.modules."""
    import ponte.core
    import ponte.nn
    import ponte.nn.init
    import ponte.nn.layer_modules
    import ponte.nn.layers
    import ponte.nn.losses
    import ponte.optimizers
    import ponte.utils

    mlx = types.ModuleType("mlx", "Ponte standing in for MLX (ponte.run).")
    mlx.__path__ = []
    mlx.core, mlx.nn, mlx.optimizers, mlx.utils = ponte.core, ponte.nn, ponte.optimizers, ponte.utils
    aliases = {
        "mlx": mlx,
        "mlx.core": ponte.core,
        "mlx.core.random": ponte.core.random,
        "mlx.core.linalg": ponte.core.linalg,
        "mlx.core.fft": ponte.core.fft,
        "mlx.core.fast": ponte.core.fast,
        "mlx.core.metal": ponte.core.metal,
        "mlx.core.cuda": ponte.core.cuda,
        "mlx.core.distributed": ponte.core.distributed,
        "mlx.nn": ponte.nn,
        "mlx.nn.layers": ponte.nn.layers,
        "mlx.nn.losses": ponte.nn.losses,
        "mlx.nn.init": ponte.nn.init,
        "mlx.optimizers": ponte.optimizers,
        "mlx.utils": ponte.utils,
    }
    aliases.update(ponte.nn.layer_modules.mlx_aliases())
    sys.modules.update(aliases)
    if not any(isinstance(f, _PonteFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PonteFinder())
    return mlx


def main(argv=None):
    """Entry point: main(["script.py", "arg", ...]). Returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m ponte.run script.py [args...]\n"
              "Runs an MLX program with mlx.* resolving to Ponte.")
        return 0 if argv else 2
    install_mlx_alias()
    sys.argv = argv
    if argv[0] == "-m" and len(argv) > 1:
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        import os
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
