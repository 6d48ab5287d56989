"""``python -m common <command>``: the user CLI (:mod:`common.commands`)."""
from common.commands import main

if __name__ == "__main__":
    main()
