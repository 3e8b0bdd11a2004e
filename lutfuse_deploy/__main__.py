from lutfuse_deploy.cli import main

main()
