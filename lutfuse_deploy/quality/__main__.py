"""``python -m lutfuse_deploy.quality``: see ``lutfuse_deploy.quality.run``."""

from lutfuse_deploy.quality.run import main

main()
