import sys

from fieldmq.cli import main

sys.exit(main())
