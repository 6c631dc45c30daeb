"""Sphinx configuration of hessx's documentation site.

Build: python3 -m sphinx -W --keep-going -b html docs docs/_build/html
(.ci/run does this with warnings as errors.)
"""

import hessx

project = "hessx"
author = "the hessx developers"
copyright = "2026, the hessx developers"
release = hessx.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_generated/*.json"]
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_typehints = "none"  # the numpydoc "Parameters" sections say it better
numpydoc_show_class_members = False
numpydoc_validation_checks: set[str] = set()

html_theme = "pydata_sphinx_theme"
html_title = f"hessx {release}"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
html_static_path: list[str] = []
