"""pipelinectl: start, stop and look at the pipeline, and its smaller commands.

    python3 src/pipelinectl.py --help
"""

import sys

from crypto_pipeline.ops.cli import main

if __name__ == "__main__":
    sys.exit(main())
