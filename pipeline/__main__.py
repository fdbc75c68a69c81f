"""``python -m pipeline`` is the ``regsweep`` command."""

from .cli import main

if __name__ == "__main__":
    main()
