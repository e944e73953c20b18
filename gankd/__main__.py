import sys

from gankd.cli import main

sys.exit(main())
