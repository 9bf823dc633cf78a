from pointcast.cli import main

main()
