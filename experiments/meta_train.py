"""Meta-train a query policy: `metaal meta-train` as a script (see metaal/commands/meta_train.py).

    python experiments/meta_train.py --config default --data-root DIR [--out DIR] [--key value ...]
"""

import sys

from metaal.commands.meta_train import main

if __name__ == "__main__":
    sys.exit(main())
