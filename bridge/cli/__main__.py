import sys

from otpbridge.cli import main

sys.exit(main())
