"""``python -m tests.reliability [--short|--full] [--backends sqlite,postgres] [--seconds N]``."""

from tests.reliability.suite import main

raise SystemExit(main())
