import sys

from robustdistiller_upstream.cli import main

sys.exit(main())
