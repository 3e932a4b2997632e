import sys

from h2stream.cli import main

sys.exit(main())
