import sys

from sensor.agent.cli import main

sys.exit(main())
