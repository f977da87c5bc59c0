"""Builds the ponte Python package: the C extension ponte.core (python/ponte/csrc/*.c, written
against the CPython C API) linked with libponte.a, which CMake builds from this repository
(or which PONTE_LIB_DIR points to: a CMake build directory holding libponte.a, or libponte.so
which the extension then loads at run time)."""
import os
import re
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("python", "ponte", "csrc")


def cmake_cache(build_dir, key):
    """The value of key in build_dir/CMakeCache.txt, or None."""
    path = os.path.join(build_dir, "CMakeCache.txt")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        for line in f:
            m = re.match(r"^%s:[A-Z]+=(.*)$" % re.escape(key), line.strip())
            if m:
                return m.group(1)
    return None


class BuildExt(build_ext):
    """Builds libponte.a with CMake when needed, then the extension against it."""

    def libponte(self):
        lib_dir = os.environ.get("PONTE_LIB_DIR")
        if lib_dir:
            lib_dir = os.path.abspath(lib_dir)
            if not any(os.path.exists(os.path.join(lib_dir, n)) for n in ("libponte.a", "libponte.so")):
                raise RuntimeError("PONTE_LIB_DIR=%s holds no libponte.a or libponte.so" % lib_dir)
            return lib_dir
        lib_dir = os.path.join(os.path.abspath(self.build_temp), "libponte")
        jobs = os.environ.get("PONTE_JOBS", str(os.cpu_count() or 2))
        subprocess.check_call(["cmake", "-S", ROOT, "-B", lib_dir, "-DCMAKE_BUILD_TYPE=Release",
                               "-DPONTE_BUILD_TESTS=OFF", "-DPONTE_BUILD_BENCH=OFF",
                               "-DPONTE_BUILD_EXAMPLES=OFF"])
        subprocess.check_call(["cmake", "--build", lib_dir, "--target", "ponte_static", "-j", jobs])
        return lib_dir

    def build_extensions(self):
        lib_dir = self.libponte()
        blas = cmake_cache(lib_dir, "OPENBLAS_LIBRARY")
        if not blas:
            raise RuntimeError("OpenBLAS not found in %s/CMakeCache.txt "
                               "(apt-get install libopenblas-openmp-dev)" % lib_dir)
        blas_dir = os.path.dirname(blas)
        # libponte.a when the build has one, else its libponte.so (found again through rpath)
        static = os.path.join(lib_dir, "libponte.a")
        libponte = static if os.path.exists(static) else os.path.join(lib_dir, "libponte.so")
        for ext in self.extensions:
            ext.extra_objects = [libponte, blas]
            ext.extra_link_args = ["-fopenmp", "-Wl,-rpath," + blas_dir, "-lm", "-lpthread"]
            zlib = cmake_cache(lib_dir, "ZLIB_LIBRARY_RELEASE") or cmake_cache(lib_dir, "ZLIB_LIBRARY")
            if zlib and not zlib.endswith("NOTFOUND"):  # .npz deflate (optional in CMake)
                if os.path.exists(zlib):
                    ext.extra_objects.append(zlib)
                else:  # a build made on another machine: the runtime library there
                    ext.extra_link_args.append("-l:libz.so.1")
            if libponte != static:
                ext.extra_link_args.append("-Wl,-rpath," + lib_dir)
            gpu_link = os.path.join(lib_dir, "ponte-gpu-link.txt")
            if os.path.exists(gpu_link):  # the CUDA backend's libraries (CMake writes them)
                with open(gpu_link) as f:
                    ext.extra_link_args += f.read().split()
        super().build_extensions()


core = Extension(
    "ponte.core",
    sources=sorted(os.path.join(CSRC, f) for f in os.listdir(os.path.join(ROOT, CSRC)) if f.endswith(".c")),
    include_dirs=[os.path.join(ROOT, "include"), os.path.join(ROOT, "src"), os.path.join(ROOT, CSRC)],
    depends=[os.path.join(CSRC, "pyponte.h"), os.path.join(CSRC, "sigtable.h"),
             os.path.join("include", "ponte.h"),
             os.path.join("src", "core", "core.h")],
    extra_compile_args=["-std=gnu11", "-O2", "-fopenmp", "-Wall", "-Wno-unused-parameter",
                        "-Wno-missing-field-initializers", "-Wno-cast-function-type"],
)

setup(
    ext_modules=[core],
    cmdclass={"build_ext": BuildExt},
    package_dir={"": "python"},
    packages=["ponte", "ponte.nn", "ponte.optimizers"],
    exclude_package_data={"ponte": ["csrc/*"]},
    # setuptools' own build tree goes under build/pysetup, beside CMake's files in build/
    options={"build": {"build_base": os.path.join("build", "pysetup")}},
)
