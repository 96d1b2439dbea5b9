"""The label convention every part shares: train ids ``0..K-1`` and one ignore id.

A leaf module (no imports), so that data, models, losses, methods and the engine name the ignore id
from one place.
"""

IGNORE_INDEX = 255  #: pixels with this id are not scored and not trained on
