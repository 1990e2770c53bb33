"""``python -m deploy anonymize|recover|run ...`` (see ``deploy.cli``)."""
from deploy.cli import main

raise SystemExit(main())
