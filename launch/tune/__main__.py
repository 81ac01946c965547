"""`python -m launch.tune DIR [--resume] [--address ADDR]`: the driver `nas tune` hands over to."""
import sys

from launch.tune.driver import main

sys.exit(main())
