"""The one compiled part of ftmon: supervisor/reading/_lines.c (line splitting).

Everything else is in pyproject.toml. The extension is optional: without a C compiler the
install goes on and ftmon uses the pure-Python twin of each function (same answers, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "supervisor.reading._lines",
            ["supervisor/reading/_lines.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
