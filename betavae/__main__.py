from betavae.cli import main

main()
