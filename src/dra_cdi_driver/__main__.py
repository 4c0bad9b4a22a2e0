from dra_cdi_driver.cli import main

raise SystemExit(main())
