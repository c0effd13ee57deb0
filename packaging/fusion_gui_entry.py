"""Entry point of the packaged app (PyInstaller): the same as the `fusion-gui` console script."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from fusion_gui.cli import main

    sys.exit(main())
