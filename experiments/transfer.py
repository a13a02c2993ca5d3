"""Transfer a frozen policy to a dataset it never saw: `metaal transfer` as a script
(see metaal/commands/transfer.py).

    python experiments/transfer.py --policy POLICY.pt --dataset fashion_mnist --out DIR [...]
"""

import sys

from metaal.commands.transfer import main

if __name__ == "__main__":
    sys.exit(main())
