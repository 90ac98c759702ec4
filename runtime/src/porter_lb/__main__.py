import sys

from porter_lb.cli import main

sys.exit(main())
