"""User-facing errors: the CLI prints their message without a traceback (``--debug`` shows it)."""


class LadsegError(Exception):
    """Bad input from the user (data, config, checkpoint): say what is wrong and what was expected."""


class DatasetError(LadsegError):
    """A dataset folder, list, image or mask that does not match the expected layout."""


class ConfigError(LadsegError):
    """A config with an unknown key or a value of the wrong type."""


class CheckpointError(LadsegError):
    """A checkpoint or weights file that does not fit the model, or is unsafe to load."""


class PaletteMismatch(DatasetError):
    """A palette ('P') label whose colours disagree with the palette the dataset declares: its ids
    would be read as other classes (``ladseg check-data`` lists such files as ``palette``)."""
