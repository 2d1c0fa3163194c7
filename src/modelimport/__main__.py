from modelimport.cli.app import main

main()
