"""python -m fastnn ... is the fastnn command."""
import sys

from fastnn.cli import main

sys.exit(main())
