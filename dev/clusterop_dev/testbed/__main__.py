import sys

from clusterop_dev.testbed.cli import main

sys.exit(main())
