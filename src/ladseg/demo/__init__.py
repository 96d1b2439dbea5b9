"""``ladseg demo``: LAD end to end on the embedded data, with a fair control.

Pieces, each importing only those before it: :mod:`ladseg.demo.recipe` (the recipe file and each
stage's config), :mod:`ladseg.demo.plots` (figures), :mod:`ladseg.demo.report` (table, summary,
report folder) and :mod:`ladseg.demo.pipeline` (trains and evaluates the stages, then writes the report).
"""

from ladseg.demo.pipeline import run_demo
from ladseg.demo.recipe import DemoRecipe, load_recipe

__all__ = ["DemoRecipe", "load_recipe", "run_demo"]
