from lnl_cli.cli import main

main()
