"""``python -m ladseg.bench``."""

from ladseg.bench import main

raise SystemExit(main())
