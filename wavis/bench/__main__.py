import sys

from wavis.bench import main

sys.exit(main())
