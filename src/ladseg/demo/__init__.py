"""``ladseg demo``: LAD end to end on the embedded data, with a fair control.

See :mod:`ladseg.demo.pipeline` for the stages and :mod:`ladseg.demo.report` for what is written.
"""

from ladseg.demo.pipeline import DemoRecipe, load_recipe, run_demo

__all__ = ["DemoRecipe", "load_recipe", "run_demo"]
