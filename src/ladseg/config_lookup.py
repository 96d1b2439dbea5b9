"""Where a config or demo recipe named by the user is found.

The YAML configs ship inside the package (``ladseg/configs``; the repository's ``configs/`` is a
link to it), so a wheel install runs ``ladseg demo`` and ``ladseg train voc/<name>.yaml`` from any
folder. A path that names an existing file is always the user's own; otherwise the same relative
path is looked up among the packaged configs, with or without a leading ``configs/``.
``_base_`` chains need nothing here: they are relative to the file that names them.
"""

from __future__ import annotations

from pathlib import Path

from ladseg.errors import ConfigError

#: the packaged configs: one folder per dataset, ``_base_`` parts and ``_recipes_`` (demo recipes)
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
RECIPE_DIR = CONFIG_DIR / "_recipes_"
DEFAULT_RECIPE = RECIPE_DIR / "demo.yaml"


def _packaged_candidates(path: Path) -> list[Path]:
    """The packaged files a relative path may mean: ``voc/x.yaml`` and ``configs/voc/x.yaml`` alike."""
    if path.is_absolute() or ".." in path.parts or not path.parts:
        return []
    candidates = [CONFIG_DIR / path]
    if path.parts[0] == "configs" and len(path.parts) > 1:
        candidates.append(CONFIG_DIR.joinpath(*path.parts[1:]))
    return candidates


def find_config(path: str | Path) -> Path:
    """The file ``path`` names: the user's file if it exists, else the packaged config of that name.

    Raises ConfigError naming both places when neither exists.
    """
    given = Path(path).expanduser()
    if given.is_file():
        return given
    candidates = _packaged_candidates(given)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = f" nor among the packaged configs in {CONFIG_DIR}" if candidates else ""
    raise ConfigError(f"config file not found: {given}{where}")


def packaged_configs(pattern: str = "**/*.yaml") -> list[Path]:
    """The packaged config files matching ``pattern``, relative to :data:`CONFIG_DIR`, sorted."""
    return sorted(p.relative_to(CONFIG_DIR) for p in CONFIG_DIR.glob(pattern) if p.is_file())
